"""Hugging Face ASTForAudioClassification keys -> the original AST repository's keys (`module.v.*`,
`module.mlp_head.*`), as its released .pth files store them. Shared by the fixture scripts."""
import torch

rename = {
    "embeddings.cls_token": "v.cls_token", "embeddings.distillation_token": "v.dist_token",
    "embeddings.position_embeddings": "v.pos_embed", "embeddings.patch_embeddings.projection": "v.patch_embed.proj",
    "layernorm": "v.norm",
}


def to_original(sd, layers, width):
    """HF ASTForAudioClassification keys -> the original `module.v.*` / `module.mlp_head.*` keys."""
    orig = {}
    P = "audio_spectrogram_transformer."
    for k, v in sd.items():
        if k.startswith(P + "encoder.layer."):
            i, rest = k[len(P + "encoder.layer."):].split(".", 1)
            if rest.startswith("attention.attention."):
                continue
            m = {"attention.output.dense": "attn.proj", "layernorm_before": "norm1", "layernorm_after": "norm2",
                 "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2"}
            stem, kind = rest.rsplit(".", 1)
            orig[f"module.v.blocks.{i}.{m[stem]}.{kind}"] = v
        elif k.startswith(P):
            stem, kind = k[len(P):].rsplit(".", 1) if not k.endswith("token") and not k.endswith("embeddings") else (k[len(P):], None)
            orig["module." + rename[stem] + (f".{kind}" if kind else "")] = v
        else:
            orig["module." + k.replace("classifier.layernorm", "mlp_head.0").replace("classifier.dense", "mlp_head.1")] = v
    for i in range(layers):
        a = P + f"encoder.layer.{i}.attention.attention."
        for kind in ["weight", "bias"]:
            orig[f"module.v.blocks.{i}.attn.qkv.{kind}"] = torch.cat([sd[a + f"query.{kind}"], sd[a + f"key.{kind}"], sd[a + f"value.{kind}"]])
    orig["module.v.head.weight"] = torch.zeros(7, width)  # timm's unused ImageNet heads ride along in the releases
    orig["module.v.head.bias"] = torch.zeros(7)
    return orig
