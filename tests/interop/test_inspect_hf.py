"""test_inspect_hf.py: `muse inspect` of an HF directory against transformers (issue 12 item 11): the parameter count
equals PreTrainedModel.num_parameters() (transformers 5.23, modeling_utils: parameters only, buffers not) when the
checkpoint carries BERT's integer buffers embeddings.position_ids / token_type_ids as old ones do (all-MiniLM-L6-v2,
saved before those buffers became persistent=False); the architecture is config.json's class and model_type.
"""
import json
import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("safetensors")


def test_bert_parameters_and_architecture(muse, tmp_path):
    from safetensors.torch import load_file, save_file
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                     max_position_embeddings=32)
    model = BertModel(cfg)
    model.save_pretrained(tmp_path)
    path = os.path.join(tmp_path, "model.safetensors")
    sd = load_file(path)
    buffers = dict(model.named_buffers())
    assert buffers["embeddings.position_ids"].dtype == torch.int64
    for name in ("embeddings.position_ids", "embeddings.token_type_ids"):
        assert name not in sd  # transformers 5 no longer saves them; old checkpoints did
        sd[name] = buffers[name].contiguous()
    save_file(sd, path, metadata={"format": "pt"})
    info = json.loads(muse("inspect", "--json", tmp_path).stdout)
    want = model.num_parameters()
    assert info["parameters"] == want, (info["parameters"], want)
    assert info["integer_elements"] == sum(b.numel() for b in buffers.values())
    assert info["architecture"] == "BertModel" and info["model_type"] == "bert"
    text = muse("inspect", "--no-tensors", tmp_path).stdout
    assert f"parameters: {want} " in text and "not counting" in text, text
