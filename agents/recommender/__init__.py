"""The agentic recommender (LLM-ARS): typed tools over the store and the trained recommenders, instruction
parsing (deterministic, or an LLM with validation and fallback), session memory, a learnable re-ranking
policy with one-line explanations, and the static baselines.

- :mod:`.tools`: ``search`` / ``score`` / ``filter`` / ``describe`` / ``remember`` / ``recall`` and the registry.
- :mod:`.constraints`, :mod:`.instructions`: what the user asked for, typed, and the parsers.
- :mod:`.llm`: the LLM protocol (SmolLM2, any transformers model, an OpenAI-compatible endpoint).
- :mod:`.policy`: features, :class:`PolicyWeights`, greedy or sampled pages with log-probability gradients.
- :mod:`.agent`, :mod:`.static`, :mod:`.page`: the agent, the baselines and what they return.
- :mod:`.safety`: store text is data, never instructions.
- :mod:`.scoring`: the base-model protocol and the popularity scorer.
"""
from .agent import Agent, AgentMemory, session_history
from .constraints import Constraints, GenreVocabulary
from .instructions import (TYPICAL_INSTRUCTIONS, ParseResult, llm_validity, parse_instruction, parse_with_llm)
from .llm import LLM, CallStats, LLMError, OpenAIChatLLM, SmolLM2, TransformersLLM
from .page import Page, Recommender
from .policy import FEATURES, PageDecision, PolicyWeights
from .safety import neutralise, quote_items
from .scoring import PopularityScorer, Scorer
from .static import StaticRecommender
from .tools import TOOLS, ToolContext, ToolRegistry, ToolResult

__all__ = ["Agent", "AgentMemory", "session_history", "Constraints", "GenreVocabulary", "TYPICAL_INSTRUCTIONS",
           "ParseResult", "llm_validity", "parse_instruction", "parse_with_llm", "LLM", "CallStats", "LLMError",
           "OpenAIChatLLM", "SmolLM2", "TransformersLLM", "Page", "Recommender", "FEATURES", "PageDecision",
           "PolicyWeights", "neutralise", "quote_items", "PopularityScorer", "Scorer", "StaticRecommender", "TOOLS",
           "ToolContext", "ToolRegistry", "ToolResult"]
