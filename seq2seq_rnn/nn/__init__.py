"""Model building blocks: encoder, attention, decoder."""
