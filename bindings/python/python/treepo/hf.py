"""``HFEngine``: the :mod:`treepo.sampler` engine protocol over a Hugging Face ``transformers``
causal LM (any model whose forward takes ``input_ids`` and returns ``.logits``).

Correctness over speed: every node keeps its full context (prompt + response token ids); a
segment is decoded per request with one forward over the node's context and then one token at a
time on the model's own KV cache (``past_key_values``), or a full forward per token with
``use_cache=False``. Nothing is shared between siblings: this is the reference engine for
checking a sampling pipeline end to end on a small model, not a fast one.

Tokens are drawn the sampler's way (:func:`treepo.sample_logits`: the config's temperature,
top-k and top-p, then an inverse-CDF draw with the request's keyed uniform, so a run is a pure
function of the model, the prompts and the sampler's ``seed``). The log-probs returned are those
of the sampled tokens under that processed distribution (the engine contract of
docs/treepo.md §1.1): at ``temperature = 1`` without top-k/top-p they are the model's own.
"""

import inspect

import torch

from .sampler import SegmentOutput, sample_logits

__all__ = ["HFEngine"]


class _Node:
    __slots__ = ("context", "children")

    def __init__(self, context):
        self.context = context
        self.children = 0


class HFEngine:
    """The engine protocol of :class:`treepo.TreeSampler` for a ``transformers`` causal LM.

    * ``model``: e.g. ``AutoModelForCausalLM`` / ``LlamaForCausalLM``; put in eval mode;
    * ``eos_token_id``: an id or a list of ids, default the model's
      ``generation_config``/``config`` ``eos_token_id``; exposed as ``stop_token_ids`` for the
      sampler's config (``TreeSampler(..., stop_token_ids=engine.stop_token_ids)``): the engine
      stops a segment only at the sampler's ``params.stop``;
    * ``device``: where inputs go (default: the model's first parameter's device);
    * ``use_cache``: decode on ``past_key_values`` within a segment (default) or recompute.
    """

    def __init__(self, model, eos_token_id=None, *, device=None, use_cache=True):
        self.model = model.eval()
        if eos_token_id is None:
            for cfg in (getattr(model, "generation_config", None), getattr(model, "config", None)):
                eos_token_id = getattr(cfg, "eos_token_id", None)
                if eos_token_id is not None:
                    break
        if eos_token_id is None:
            ids = []
        elif isinstance(eos_token_id, int):
            ids = [eos_token_id]
        else:
            ids = [int(t) for t in eos_token_id]
        self.stop_token_ids = sorted(set(ids))
        self.device = device if device is not None else next(model.parameters()).device
        self.use_cache = use_cache
        # transformers >= 5.2x names the KV cache `cache` (in and out); older ones
        # `past_key_values`.
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._nodes = {}
        self._next = 0

    def _new(self, context):
        handle = self._next
        self._next += 1
        self._nodes[handle] = _Node(context)
        return handle

    def _get(self, handle):
        node = self._nodes.get(handle)
        if node is None:
            raise ValueError(f"HFEngine: node {handle!r} is unknown or released")
        return node

    def prefill(self, prompts):
        return [self._new([int(t) for t in p]) for p in prompts]

    def fork(self, node, n):
        parent = self._get(node)
        parent.children += n
        return [self._new(list(parent.context)) for _ in range(n)]

    def release(self, node):
        self._get(node)
        del self._nodes[node]

    def _logits(self, ids, past):
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        kwargs = {self._cache_arg: past} if past is not None else {}
        out = self.model(input_ids=x, use_cache=self.use_cache, **kwargs)
        return out.logits[0, -1], (getattr(out, self._cache_arg) if self.use_cache else None)

    @torch.no_grad()
    def decode_segment(self, requests, params):
        stop = set(params.stop)
        outs = []
        for req in requests:
            node = self._get(req.node)
            if node.children:
                raise ValueError(f"HFEngine: node {req.node!r} has children and is frozen")
            tokens, logprobs, entropies = [], [], []
            end = "max_tokens"
            logits, past = self._logits(node.context, None)
            for i in range(req.max_tokens):
                tok, lp, ent = sample_logits(logits, params, req.uniform(i))
                tokens.append(tok)
                logprobs.append(lp)
                entropies.append(ent)
                node.context.append(tok)
                if tok in stop:
                    end = "stop"
                    break
                if i + 1 < req.max_tokens:
                    ids = [tok] if past is not None else node.context
                    logits, past = self._logits(ids, past)
            outs.append(SegmentOutput(tokens, logprobs, end,
                                      entropies if params.entropy else None))
        return outs

    def kv_pages_in_use(self):
        """No paged KV cache: the number of live nodes, for the sampler's peak accounting."""
        return len(self._nodes)
