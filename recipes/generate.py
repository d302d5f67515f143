"""Generate text from a prompt or a short chat with a (fine-tuned, optionally quantized) model.

    tune run generate --config generation prompt.user="Tell me a joke."

Steps:
1. build the model; with ``quantizer`` set, quantize the freshly built model first so its
   weights have the torchao types of the quantized checkpoint, then load the checkpoint;
2. turn the prompt into tokens: a plain string is encoded as is (with BOS), a
   ``{system, user}`` mapping goes through the tokenizer's chat template as a generation prompt;
3. decode with ``torchtune.generation.generate`` (static KV cache unless ``enable_kv_cache`` is
   False, greedy when ``temperature`` is 0, stopping at the tokenizer's stop tokens);
4. print the text, the time, tokens/s, the bandwidth it implies and the peak memory.
"""

import sys
import time
from typing import Any, Dict, List

import torch
from omegaconf import DictConfig

from torchtune import config, generation, training, utils
from torchtune.data import Message
from torchtune.training.quantization import get_model_size_bytes, load_quantized_model

log = utils.get_logger("INFO")


class InferenceRecipe:
    """Single-device text generation for one prompt.

    Args:
        cfg (DictConfig): the recipe config (see ``recipes/configs/generation.yaml``).
    """

    def __init__(self, cfg: DictConfig) -> None:
        self._device = utils.get_device(cfg.device)
        self._dtype = training.get_dtype(cfg.dtype, device=self._device, allow_fp16=True)
        self._quantizer = config.instantiate(cfg.get("quantizer", None))
        training.set_seed(seed=cfg.get("seed", None))

    def setup(self, cfg: DictConfig) -> None:
        """Load the checkpoint, build (and quantize) the model, build the tokenizer."""
        checkpointer = config.instantiate(cfg.checkpointer)
        state_dict = checkpointer.load_checkpoint()[training.MODEL_KEY]
        self._model = self._setup_model(cfg.model, state_dict, source=str(cfg.checkpointer.checkpoint_dir))
        self._tokenizer = config.instantiate(cfg.tokenizer)

    def _setup_model(self, cfg_model: DictConfig, state_dict: Dict[str, Any], source: str) -> torch.nn.Module:
        with training.set_default_dtype(self._dtype), self._device:
            model = config.instantiate(cfg_model)
        model = load_quantized_model(model, state_dict, self._quantizer, source=source)
        log.info(
            f"Model on {self._device} in {self._dtype}"
            + (f", quantized with {type(self._quantizer).__name__}" if self._quantizer is not None else "")
            + f": {get_model_size_bytes(model) / 1e6:.1f} MB of weights"
        )
        return model

    def convert_prompt_to_tokens(self, prompt: Any) -> List[int]:
        """Tokens of a plain-text prompt, or of a chat prompt ``{system (optional), user}``.

        Raises:
            ValueError: if ``prompt`` is neither a string nor a mapping with ``user`` (and
                optionally ``system``).
        """
        if isinstance(prompt, str):
            return self._tokenizer.encode(prompt, add_bos=True, add_eos=False)
        if isinstance(prompt, (dict, DictConfig)) and prompt.get("user") and set(prompt) <= {"system", "user"}:
            messages = []
            if prompt.get("system"):
                messages.append(Message(role="system", content=prompt["system"]))
            # The empty assistant turn makes the template end where the answer starts.
            messages += [Message(role="user", content=prompt["user"]), Message(role="assistant", content="")]
            return self._tokenizer({"messages": messages}, inference=True)["tokens"]
        raise ValueError(
            "prompt must be a string or a mapping {system: <optional text>, user: <text>}, "
            f"got {prompt!r}"
        )

    @torch.inference_mode()
    def generate(self, cfg: DictConfig) -> str:
        """Generate from ``cfg.prompt`` and log the text and speed.

        Returns:
            str: the decoded prompt and continuation.
        """
        tokens = self.convert_prompt_to_tokens(cfg.prompt)
        prompt = torch.tensor(tokens, dtype=torch.long, device=self._device)
        max_new_tokens = cfg.max_new_tokens
        if cfg.get("enable_kv_cache", True):
            with self._device:
                self._model.setup_caches(
                    batch_size=1, dtype=self._dtype, decoder_max_seq_len=prompt.numel() + max_new_tokens
                )
        next_token = None
        if cfg.get("compile", False):
            next_token = torch.compile(generation.generate_next_token, dynamic=False)
        kwargs = dict(
            pad_id=self._tokenizer.pad_id,
            temperature=cfg.temperature,
            top_k=cfg.get("top_k", None),
            top_p=cfg.get("top_p", None),
            stop_tokens=self._tokenizer.stop_tokens,
            custom_generate_next_token=next_token,
        )
        if next_token is not None:  # compile outside the timed run
            t0 = time.perf_counter()
            generation.generate(self._model, prompt, max_generated_tokens=2, **kwargs)
            log.info(f"Warm-up (compilation) took {time.perf_counter() - t0:.2f} s")

        t0 = time.perf_counter()
        output, _ = generation.generate(self._model, prompt, max_generated_tokens=max_new_tokens, **kwargs)
        elapsed = time.perf_counter() - t0

        text = self._tokenizer.decode(output[0].tolist())
        log.info(f"\n\n{text}\n")
        new_tokens = output.shape[1] - prompt.numel()
        tokens_per_s = new_tokens / elapsed
        log.info(f"Time for inference: {elapsed:.02f} sec total, {new_tokens} tokens, {tokens_per_s:.02f} tokens/sec")
        # Each decode step reads every weight once, so this is the memory bandwidth it implies.
        log.info(f"Bandwidth achieved: {get_model_size_bytes(self._model) * tokens_per_s / 1e9:.02f} GB/s")
        training.log_memory_stats(training.get_memory_stats(self._device), "Memory stats after generation:")
        return text


@config.parse
def recipe_main(cfg: DictConfig) -> None:
    """Entry point: ``tune run generate --config generation [key=value ...]``."""
    config.log_config(recipe_name="InferenceRecipe", cfg=cfg)
    recipe = InferenceRecipe(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe.generate(cfg=cfg)


if __name__ == "__main__":
    sys.exit(recipe_main())
