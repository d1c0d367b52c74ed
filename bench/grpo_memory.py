"""The analytic memory estimate of a GRPO step (`grpo_step.py --estimate-only`, and beside every measured run): weights,
gradients, optimizer state, activations and the reference model of the policy, for HF generation and vLLM colocate,
full fine-tuning and LoRA, against the targets of issue 9 (one 80 GB GPU full, 24 GB with LoRA)."""

from __future__ import annotations

from typing import Any

GB = 1e9  # memory claims ("fits 80 GB", "fits 24 GB") are in decimal GB, as GPU sizes are sold
FULL_TARGET_GB = 80.0
LORA_TARGET_GB = 24.0


def unique_params(model) -> list:
    """Parameters counted once (Qwen2-VL-2B ties its LM head to the embedding)."""
    return list({id(p): p for p in model.parameters()}.values())


def lora_param_count(model, r: int, targets: list[str]) -> int:
    """Adapter parameters PEFT adds: r x (in + out) for every `nn.Linear` whose name ends with a target."""
    import torch

    total = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and any(name == t or name.endswith("." + t) for t in targets):
            total += r * (module.in_features + module.out_features)
    return total


def memory_estimate(
    *,
    params: int,
    trainable: int,
    weight_bytes: int,
    trainable_bytes: int,
    reference_model: bool,
    lora: bool,
    text: dict[str, int],
    vision: dict[str, int],
    rows: int,
    prompt_tokens: int,
    completion_tokens: int,
    image_patches: int,
    gradient_checkpointing: bool,
    vllm_utilization: float,
    target_gb: float,
    activation_bytes: int = 2,
) -> dict[str, Any]:
    """What one training process holds at the peak of a GRPO step, component by component, in bytes.

    Exact for the states: weights, gradients, AdamW's two moments (torch keeps them in the parameter's dtype; PEFT
    keeps LoRA adapters in float32), the frozen reference model (full fine-tuning with beta > 0; with LoRA the
    reference is the base model with adapters off). Rough for activations: with gradient checkpointing each decoder
    (and vision) layer keeps its input, and one layer's working set is live during recomputation; TRL's fused LM head
    never materialises the (tokens x vocabulary) logits. CUDA context, allocator fragmentation and temporary buffers
    are not counted, so a real peak is higher. vLLM colocate reserves `gpu_memory_utilization` of the GPU for its
    weights and KV cache.
    """
    text_tokens = rows * (prompt_tokens + completion_tokens)
    patches = rows * image_patches
    text_layer = text_tokens * (4 * text["hidden"] + 3 * text["intermediate"]) * activation_bytes
    vision_layer = patches * (4 * vision["dim"] + vision["mlp"]) * activation_bytes
    if gradient_checkpointing:
        text_act = text["layers"] * text_tokens * text["hidden"] * activation_bytes + text_layer
        vision_act = vision["layers"] * patches * vision["dim"] * activation_bytes + vision_layer
    else:
        text_act = text["layers"] * text_layer
        vision_act = vision["layers"] * vision_layer
    base = params * weight_bytes
    components = {
        "policy weights": base + (trainable * trainable_bytes if lora else 0),
        "gradients": trainable * trainable_bytes,
        "AdamW moments (2 per trained parameter)": 2 * trainable * trainable_bytes,
        "reference model": base if reference_model else 0,
        "activations, language model (rough)": text_act,
        "activations, vision tower (rough)": vision_act,
    }
    total_hf = sum(components.values())
    vllm = vllm_utilization * target_gb * GB
    return {
        "components_gb": {name: round(value / GB, 2) for name, value in components.items()},
        "total_hf_gb": round(total_hf / GB, 2),
        "vllm_reserved_gb": round(vllm / GB, 2),
        "vllm_gpu_memory_utilization": vllm_utilization,
        "total_vllm_colocate_gb": round((total_hf + vllm) / GB, 2),
        "target_gb": target_gb,
        "fits_target_hf": total_hf <= target_gb * GB,
        "fits_target_vllm": total_hf + vllm <= target_gb * GB,
        "inputs": {
            "params": params,
            "trainable_params": trainable,
            "weight_bytes": weight_bytes,
            "trainable_bytes": trainable_bytes,
            "reference_model": reference_model,
            "rows_per_forward": rows,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "image_patches_per_row": image_patches,
            "gradient_checkpointing": gradient_checkpointing,
        },
    }


def architecture(config) -> tuple[dict[str, int], dict[str, int]]:
    """Language-model and vision-tower sizes that the activation estimate needs."""
    text_config, vision_config = config.text_config, config.vision_config
    text = {
        "layers": text_config.num_hidden_layers,
        "hidden": text_config.hidden_size,
        "intermediate": text_config.intermediate_size,
    }
    vision = {
        "layers": vision_config.depth,
        "dim": vision_config.embed_dim,
        "mlp": int(vision_config.embed_dim * vision_config.mlp_ratio),
    }
    return text, vision


def estimate_for(model, config, training_args, model_args, prompt_tokens: int, image_patches: int) -> dict:
    """`memory_estimate` for a (possibly meta-device) model under a parsed recipe."""
    import torch

    lora = bool(model_args.use_peft)
    params = sum(p.numel() for p in unique_params(model))
    dtype = model_args.dtype if model_args.dtype not in (None, "auto") else "float32"
    weight_bytes = torch.empty((), dtype=getattr(torch, dtype)).element_size()
    if lora:
        trainable = lora_param_count(model, model_args.lora_r, list(model_args.lora_target_modules or []))
        trainable_bytes = 4  # PEFT's autocast_adapter_dtype keeps bf16 / fp16 adapters in float32
    else:
        trainable, trainable_bytes = params, weight_bytes
    text, vision = architecture(config)
    common = dict(
        params=params,
        trainable=trainable,
        reference_model=training_args.beta > 0 and not lora,
        lora=lora,
        text=text,
        vision=vision,
        rows=training_args.per_device_train_batch_size,
        prompt_tokens=prompt_tokens,
        completion_tokens=training_args.max_completion_length,
        image_patches=image_patches,
        gradient_checkpointing=bool(training_args.gradient_checkpointing),
        vllm_utilization=training_args.vllm_gpu_memory_utilization,
        target_gb=LORA_TARGET_GB if lora else FULL_TARGET_GB,
    )
    estimate = memory_estimate(weight_bytes=weight_bytes, trainable_bytes=trainable_bytes, **common)
    if not lora and weight_bytes < 4:
        # Pure bf16 weights lose AdamW's updates at lr 1e-6 (a step is below bf16's resolution for most weights);
        # float32 weights under bf16 autocast keep them, at this cost (TRL builds the reference in the policy's dtype).
        fp32 = memory_estimate(weight_bytes=4, trainable_bytes=4, **common)
        estimate["float32_weights"] = {key: fp32[key] for key in ("total_hf_gb", "total_vllm_colocate_gb")}
    return estimate
