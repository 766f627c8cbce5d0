"""Models from a Hugging Face-style hub: `hf://` sources, downloads into the models folder."""
