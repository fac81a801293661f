"""LoRA fine-tuning: base models, text data and the training loop behind the `lora` objective."""
