"""The trust boundary: what we treat as hostile and how it is kept from running code or
leaking a secret (see README, Security).

- `redaction`: scrub secrets from any text or data before it is printed or written, in
  linear time (`secret_forms`: the spellings of a secret; `assigned_values`: where a value
  assigned to a secret-looking name ends);
- `digests`: the same scrubbing inside a trial's process, from salted digests of the secrets;
- `streams`: stdout and stderr scrubbed line by line, nothing cut;
- `descriptors`: a trial's file descriptors 1 and 2 scrubbed by a helper process;
- `credentials`: where API keys may come from, and refusals when a config carries one;
- `keys`: reading and checking API keys (environment, `.env`, key files);
- `limits`: bounds on untrusted files and stored data (size, depth, alias expansion);
- `stored_objective`: rebuild a stored study's objective by an allow-list, never by import;
- (a stored trial's parameters are checked against its search space in `space.stored_params`);
- `pickles`: when state may be unpickled from the study storage;
- `paths`: no planted link written through, no special file replaced.
"""
