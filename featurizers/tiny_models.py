"""Random-init models built from configs, for tests and throughput benchmarks only.

No weights are read or downloaded: every model here is built offline from a ``transformers`` config
with ``torch.manual_seed(seed)`` initialisation, so its outputs are meaningless and only the pipeline
around it (hashing, decoding, processors, padding, batching, ``generate``) is exercised.

Featurizers built from these models go through the ``from_model`` constructors
(:meth:`mmfeat.featurizers.captioning.Captioner.from_model`,
:meth:`mmfeat.featurizers.image_embedding.ImageEmbedder.from_model`, ...), whose fingerprints carry
``"random_init": true``; a real run never builds one (backbones come from
:func:`mmfeat.featurizers.registry.resolve_backbone`).

The tests use the defaults (tens of thousands of parameters); ``bench/`` asks for larger shapes.
``bench/`` imports these builders from here, never from ``tests/``.

Example::

    >>> from mmfeat.featurizers.tiny_models import tiny_llava
    >>> model, processor = tiny_llava()
    >>> model.config.model_type
    'llava'
"""

from __future__ import annotations

from typing import Any

__all__ = ["LLAVA_WORDS", "LLAVA_CHAT_TEMPLATE", "tiny_llava", "tiny_clip"]

#: The word-level vocabulary of :func:`tiny_llava` (special tokens, the chat roles, then ``w0``, ``w1``, ...).
LLAVA_WORDS = ["<pad>", "<s>", "</s>", "<unk>", "<image>", "USER:", "ASSISTANT:"] + [f"w{i}" for i in range(40)]

#: A LLaVA-1.5-style chat template: ``USER: <image> {text} ASSISTANT:``.
LLAVA_CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}USER: {% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image> {% elif c['type'] == 'text' %}{{ c['text'] }} {% endif %}"
    "{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def _clip_image_processor(image_size: int) -> Any:
    try:
        from transformers import CLIPImageProcessorPil as Processor
    except ImportError:  # transformers 4.x
        from transformers import CLIPImageProcessor as Processor
    return Processor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})


def tiny_llava(seed: int = 0, *, image_size: int = 28, vision_hidden: int = 16, vision_layers: int = 1,
               text_hidden: int = 16, text_layers: int = 1, heads: int = 2, n_words: int = 40) -> tuple[Any, Any]:
    """A random-init LLaVA (CLIP vision tower + Llama) and its processor, built offline from configs.

    Args:
        seed: ``torch.manual_seed`` before the model is built (same seed, same weights).
        image_size: input side in pixels (patch size 14, so ``(image_size // 14) ** 2`` image tokens).
        vision_hidden, vision_layers: the CLIP vision tower's width and depth.
        text_hidden, text_layers: the Llama's width and depth.
        heads: attention heads of both towers.
        n_words: plain words ``w0 .. w{n_words-1}`` in the word-level vocabulary.

    Returns:
        ``(model, processor)``: a ``LlavaForConditionalGeneration`` in eval mode whose
        ``generation_config.eos_token_id`` is ``None`` (random weights: it always generates
        ``max_new_tokens``), and a ``LlavaProcessor`` with :data:`LLAVA_CHAT_TEMPLATE`.

    The defaults give a ~20k-parameter model for tests; the captioning benchmark asks for a larger one.
    """
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    words = LLAVA_WORDS[:7] + [f"w{i}" for i in range(n_words)]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
    )
    processor = LlavaProcessor(
        image_processor=_clip_image_processor(image_size), tokenizer=tok, patch_size=14,
        vision_feature_select_strategy="default", chat_template=LLAVA_CHAT_TEMPLATE, num_additional_image_tokens=1,
    )
    vision = CLIPVisionConfig(hidden_size=vision_hidden, intermediate_size=2 * vision_hidden,
                              num_hidden_layers=vision_layers, num_attention_heads=heads, image_size=image_size,
                              patch_size=14, projection_dim=vision_hidden)
    text = LlamaConfig(vocab_size=len(words), hidden_size=text_hidden, intermediate_size=2 * text_hidden,
                       num_hidden_layers=text_layers, num_attention_heads=heads, num_key_value_heads=heads,
                       max_position_embeddings=1024, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=4, vision_feature_layer=-1)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = None  # random weights: always generate max_new_tokens
    return model, processor


def tiny_clip(seed: int = 0, *, image_size: int = 32, patch_size: int = 8, vision_hidden: int = 32,
              vision_intermediate: int | None = None, vision_layers: int = 2, vision_heads: int = 2,
              text_hidden: int = 32, text_layers: int = 2, projection_dim: int = 16) -> tuple[Any, Any, Any]:
    """A random-init ``CLIPModel``, its PIL image processor and a byte-level tokenizer, all offline.

    Args:
        seed: ``torch.manual_seed`` before the model is built.
        image_size, patch_size: the vision tower's input side and patch side, in pixels.
        vision_hidden, vision_intermediate, vision_layers, vision_heads: the vision tower's shape
            (``vision_intermediate`` defaults to ``2 * vision_hidden``).
        text_hidden, text_layers: the text tower's shape (2 heads, 64 positions).
        projection_dim: the joint embedding's dimension.

    Returns:
        ``(model, processor, tokenizer)``: the model in eval mode, a CLIP image processor resizing
        and centre-cropping to ``image_size``, and a ``CLIPTokenizer`` over the 256 byte-level
        characters (no merges), so any text tokenizes.

    The defaults give a tiny model for tests; ``bench/features/bench_image_embedding.py`` asks for ViT-sized
    vision towers (the text tower stays tiny: image embeddings do not use it).
    """
    import torch
    from tokenizers import pre_tokenizers
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=text_hidden, intermediate_size=2 * text_hidden,
                         num_hidden_layers=text_layers, num_attention_heads=2, max_position_embeddings=64,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(hidden_size=vision_hidden, intermediate_size=vision_intermediate or 2 * vision_hidden,
                           num_hidden_layers=vision_layers, num_attention_heads=vision_heads,
                           image_size=image_size, patch_size=patch_size),
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    return model, _clip_image_processor(image_size), tokenizer
