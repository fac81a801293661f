"""The trust boundary: what we treat as hostile and how it is kept from running code or
leaking a secret (see README, Security).

- `redaction`: scrub secrets from any text or data before it is printed or written;
- `credentials`: where API keys may come from, and refusals when a config carries one;
- `keys`: reading and checking API keys (environment, `.env`, key files);
- `limits`: bounds on untrusted files and stored data (size, depth, alias expansion);
- `stored_objective`: rebuild a stored study's objective by an allow-list, never by import.
"""
