"""The causal Wan DiT and its streaming attention cache."""
from .transformer import TINY_CONFIG, WAN_1_3B_CONFIG, CausalWanTransformer, GridAttention, TextKV
from .kv_cache import AnchorWindowCache, CacheLayout

__all__ = ["CausalWanTransformer", "GridAttention", "TextKV", "AnchorWindowCache", "CacheLayout",
           "TINY_CONFIG", "WAN_1_3B_CONFIG"]
