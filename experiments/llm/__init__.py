"""The Murphy experiments on a language model (tiny Llama or SmolLM2-135M): config, shared set-up, methods, the resumable run, statistics, the report section."""
