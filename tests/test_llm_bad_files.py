"""Broken, hostile and absurd model files: each gets one ModelFileError naming the file and the cause."""

import json
import pickle
import shutil
import struct
import tracemalloc
import types
import zipfile

import numpy as np
import pytest
from llm_utils import tiny_vocab, write_gguf

from murphyjax.llm import LlamaConfig, ModelFileError, init, load_pretrained, save_hf
from murphyjax.llm.weights import model_to_arrays, read_safetensors

CFG = LlamaConfig.tiny(vocab_size=len(tiny_vocab()[0]))
PICKLE = pickle.dumps({"weight": [1.0, 2.0]}, protocol=4)  # built, never loaded


def good_files(root):
    """A good HF folder and GGUF file of CFG under ``root``, which the broken cases start from."""
    from gguf import GGUFReader

    model = init(CFG, seed=1)
    arrays = model_to_arrays(model)
    save_hf(model, root / "hf")
    write_gguf(root / "m.gguf", arrays, CFG)
    st = (root / "hf" / "model.safetensors").read_bytes()
    return types.SimpleNamespace(hf=root / "hf", gguf=root / "m.gguf", arrays=arrays, st=st,
                                 n=struct.unpack("<Q", st[:8])[0],
                                 gguf_header=GGUFReader(str(root / "m.gguf")).data_offset)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return good_files(tmp_path_factory.mktemp("good"))


def safetensors_bytes(header, data=b"") -> bytes:
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def folder(tmp_path, good, weights=..., config=...):
    """A copy of the good folder with model.safetensors and/or config.json replaced (bytes, JSON; None removes)."""
    d = tmp_path / "m"
    shutil.copytree(good.hf, d)
    for name, new in (("model.safetensors", weights), ("config.json", config)):
        if new is None:
            (d / name).unlink()
        elif new is not ...:
            (d / name).write_bytes(new if isinstance(new, bytes) else json.dumps(new).encode())
    return d


def st_case(data, keyword):
    def build(tmp_path, good):
        d = folder(tmp_path, good, weights=data(good) if callable(data) else data)
        return d, d / "model.safetensors", keyword
    return build


def config_case(edit, keyword, named="config.json"):
    def build(tmp_path, good):
        cfg = json.loads((good.hf / "config.json").read_text())
        d = folder(tmp_path, good, config=edit(cfg))
        return d, d / named if named else d, keyword
    return build


def one_tensor(dtype="F32", shape=(2,), offsets=(0, 8), data=b"\0" * 8):
    return safetensors_bytes({"model.norm.weight": {"dtype": dtype, "shape": list(shape),
                                                    "data_offsets": list(offsets)}}, data)


def rewritten(good, **changes):
    from safetensors.numpy import save

    arrays = {**good.arrays, **changes}
    return save({k: v for k, v in arrays.items() if v is not None})


def torch_zip() -> bytes:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", PICKLE)
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


def pickle_folder(names, config=True):
    def build(tmp_path, good):
        d = tmp_path / "m"
        d.mkdir()
        if config:
            shutil.copy(good.hf / "config.json", d)
        for n in names:
            (d / n).write_bytes(PICKLE)
        return d, d / names[0], "pickle checkpoints are never loaded: they can run code; convert to safetensors"
    return build


def pickle_file(name):
    def build(tmp_path, good):
        (tmp_path / name).write_bytes(PICKLE)
        return tmp_path / name, tmp_path / name, "pickle"
    return build


def gguf_case(edit, keyword):
    def build(tmp_path, good):
        path = tmp_path / "m.gguf"
        shutil.copy(good.gguf, path)
        edit(path, good)
        return path, path, keyword
    return build


def gguf_bytes(data):
    return lambda path, good: path.write_bytes(data(path.read_bytes()) if callable(data) else data)


def gguf_field(get, value):
    """Overwrite one number of the header in place (``get(reader)``: the numpy view of the file holding it)."""
    def edit(path, good):
        from gguf import GGUFReader

        reader = GGUFReader(str(path), "r+")
        get(reader)[0] = value
        reader.data.flush()
    return edit


def gguf_tensor(name, part):
    return lambda r: next(t for t in r.tensors if t.name == name).field.parts[part]


def replaced_by(name, make):
    """The good folder with ``name`` replaced by ``make(path, good)`` (a folder, a link...)."""
    def build(tmp_path, good):
        d = folder(tmp_path, good)
        (d / name).unlink()
        make(d / name, good)
        return d, d / name, None
    return build


def with_keyword(build, keyword):
    return lambda tmp_path, good: (*build(tmp_path, good)[:2], keyword)


def second_shard(tmp_path, good):
    from safetensors.numpy import save

    d = folder(tmp_path, good)
    (d / "model-b.safetensors").write_bytes(save({"model.norm.weight": good.arrays["model.norm.weight"]}))
    return d, d / "model-b.safetensors", "two shards hold it"


def small_embedding(kind):
    """A model whose embedding has fewer rows than its tokenizer has tokens (the GGUF always carries one)."""
    def build(tmp_path, good):
        from murphyjax.llm.tokenizer import build_bpe_tokenizer

        cfg = LlamaConfig.tiny(vocab_size=CFG.vocab_size - 9)
        model = init(cfg, seed=1)
        if kind == "gguf":
            write_gguf(tmp_path / "m.gguf", model_to_arrays(model), cfg)
            return tmp_path / "m.gguf", tmp_path / "m.gguf", "more than the 260 rows"
        tokens, types, merges = tiny_vocab()
        save_hf(model, tmp_path / "m", tokenizer=build_bpe_tokenizer(tokens, merges, types, eos_id=2, pad_id=0))
        return tmp_path / "m", tmp_path / "m" / "tokenizer.json", "more than the 260 rows"
    return build


def bad_tokenizer_json(tmp_path, good):
    d = folder(tmp_path, good)
    (d / "tokenizer.json").write_text("{garbage")
    return d, d / "tokenizer.json", "invalid tokenizer"


RNG = np.random.default_rng(0)
GARBAGE = RNG.integers(0, 256, 4096, dtype=np.uint8).tobytes()
UP1 = "model.layers.1.mlp.up_proj.weight"

# name -> build(tmp_path, good) -> (what to load, the file the message must name, a phrase of the cause)
CASES = {
    # safetensors
    "st_empty": st_case(b"", "truncated"),
    "st_garbage": st_case(GARBAGE, "not safetensors"),
    "st_huge_header_length": st_case(struct.pack("<Q", 2**64 - 1) + b"{}", "beyond the file size"),
    "st_header_length_zero": st_case(struct.pack("<Q", 0), "not valid JSON"),
    "st_header_invalid_json": st_case(safetensors_bytes(b"{not json"), "not valid JSON"),
    "st_header_not_utf8": st_case(safetensors_bytes(b'{"\xff\xfe": 1}'), "not valid JSON"),
    "st_header_deeply_nested": st_case(safetensors_bytes(b"[" * 100_000), "not valid JSON"),
    "st_header_a_list": st_case(safetensors_bytes([1, 2]), "not an object"),
    "st_entry_not_an_object": st_case(safetensors_bytes({"model.norm.weight": 5}), "not an object"),
    "st_unknown_dtype": st_case(one_tensor(dtype="F8_X"), "unsupported dtype 'F8_X'"),
    "st_dtype_a_list": st_case(one_tensor(dtype=["F32"]), "unsupported dtype"),
    "st_negative_shape": st_case(one_tensor(shape=(-2,)), "invalid shape"),
    "st_offsets_beyond_file": st_case(one_tensor(offsets=(0, 10**12)), "beyond"),
    "st_offsets_reversed": st_case(one_tensor(offsets=(8, 0)), "invalid data_offsets"),
    "st_offsets_not_matching_shape": st_case(one_tensor(shape=(2, 2)), "needs 16"),
    "st_huge_shape": st_case(one_tensor(shape=(2**40, 2**40)), "needs"),
    "st_wrong_shape_for_config": st_case(lambda g: rewritten(g, **{UP1: np.ascontiguousarray(g.arrays[UP1].T)}),
                                         "wrong shape for the config"),
    "st_pickle_disguised": st_case(PICKLE, "pickle checkpoints are never loaded"),
    "st_pickle_protocol_2_disguised": st_case(pickle.dumps([1.0], protocol=2), "pickle"),
    "st_torch_zip_disguised": st_case(torch_zip(), "pickle"),
    "st_a_folder": with_keyword(replaced_by("model.safetensors", lambda p, g: p.mkdir()),
                                "a folder where a file is expected"),
    "st_broken_link": with_keyword(replaced_by("model.safetensors", lambda p, g: p.symlink_to(p.parent / "gone")),
                                   "cannot be read"),
    "st_integer_weights": st_case(lambda g: rewritten(g, **{"model.norm.weight": np.ones(64, np.int32)}),
                                  "not a floating-point type"),
    "st_nan_weights": st_case(lambda g: rewritten(g, **{UP1: np.full_like(g.arrays[UP1], np.nan)}), "non-finite"),
    "st_inf_weights": st_case(lambda g: rewritten(g, **{"model.norm.weight": np.full(64, np.inf, np.float32)}),
                              "non-finite"),
    "st_tensor_in_two_shards": second_shard,
    "st_file_without_folder": lambda tmp_path, good: (good.hf / "model.safetensors", good.hf / "model.safetensors",
                                                      "pass the folder"),
    # config.json
    "cfg_missing": config_case(lambda c: None, "config.json not found"),
    "cfg_a_folder": with_keyword(replaced_by("config.json", lambda p, g: p.mkdir()), "a folder where a file is expected"),
    "cfg_link_loop": with_keyword(replaced_by("config.json", lambda p, g: p.symlink_to(p)), "cannot be read"),
    "cfg_null": config_case(lambda c: b"null", "got a JSON null"),
    "cfg_missing_key": config_case(lambda c: {k: v for k, v in c.items() if k != "hidden_size"},
                                   "missing config key 'hidden_size'"),
    "cfg_a_list": config_case(lambda c: [c], "JSON object"),
    "cfg_invalid_json": config_case(lambda c: b'{"vocab_size": 3,', "not valid JSON"),
    "cfg_empty": config_case(lambda c: b"", "not valid JSON"),
    "cfg_string_value": config_case(lambda c: {**c, "hidden_size": "64"}, "positive integer"),
    "cfg_negative_value": config_case(lambda c: {**c, "num_attention_heads": -4}, "positive integer"),
    "cfg_nan_eps": config_case(lambda c: {**c, "rms_norm_eps": float("nan")}, "rms_norm_eps"),
    "cfg_rope_a_list": config_case(lambda c: {**c, "rope_parameters": [1]}, "rope"),
    "cfg_heads_not_dividing": config_case(lambda c: {**c, "num_key_value_heads": 3}, "num_kv_heads"),
    "cfg_absurd_layers": config_case(lambda c: {**c, "num_hidden_layers": 10**12}, "missing tensor", None),
    "cfg_wrong_hidden_size": config_case(lambda c: {**c, "hidden_size": 32}, "wrong shape for the config",
                                         "model.safetensors"),
    "missing_tensor": lambda tmp_path, good: (
        d := folder(tmp_path, good, weights=rewritten(good, **{"model.norm.weight": None})), d,
        "missing tensor 'model.norm.weight'"),
    "no_weights": lambda tmp_path, good: (d := folder(tmp_path, good, weights=None), d, "no \\*.safetensors"),
    "bad_tokenizer_json": bad_tokenizer_json,
    "tokenizer_beyond_embedding": small_embedding("hf"),
    # pickle checkpoints
    "only_pytorch_model_bin": pickle_folder(["pytorch_model.bin"]),
    "only_bin_no_config": pickle_folder(["pytorch_model.bin"], config=False),
    "only_pt": pickle_folder(["model.pt"], config=False),
    "only_ckpt": pickle_folder(["model.ckpt"]),
    "only_pickle_content": pickle_folder(["weights.data"]),
    "file_pt": pickle_file("model.pt"),
    "file_ckpt": pickle_file("last.ckpt"),
    "file_no_suffix": pickle_file("weights"),
    "file_gguf_named_pickle": pickle_file("model.gguf"),
    # GGUF
    "gguf_empty": gguf_case(gguf_bytes(b""), "not a GGUF file"),
    "gguf_no_magic": gguf_case(gguf_bytes(GARBAGE), "not a GGUF file"),
    "gguf_magic_then_garbage": gguf_case(gguf_bytes(b"GGUF" + GARBAGE), "corrupt GGUF"),
    "gguf_v3_then_garbage": gguf_case(gguf_bytes(b"GGUF\x03\0\0\0" + GARBAGE), "corrupt GGUF"),
    "gguf_bad_version": gguf_case(gguf_field(lambda r: r.fields["GGUF.version"].parts[0], 99), "version 99"),
    "gguf_huge_tensor_count": gguf_case(gguf_field(lambda r: r.fields["GGUF.tensor_count"].parts[0], 2**62),
                                        "do not fit"),
    "gguf_huge_array": gguf_case(gguf_field(lambda r: r.fields["tokenizer.ggml.token_type"].parts[4], 2**62),
                                 "corrupt GGUF"),
    "gguf_huge_string": gguf_case(gguf_field(lambda r: r.fields["general.architecture"].parts[3], 2**62),
                                  "truncated"),
    "gguf_unknown_tensor_type": gguf_case(gguf_field(gguf_tensor("blk.0.attn_q.weight", 4), 999),
                                          "unknown tensor type 999"),
    "gguf_offset_beyond_file": gguf_case(gguf_field(gguf_tensor("output_norm.weight", 5), 2**40), "beyond"),
    "gguf_huge_dims": gguf_case(gguf_field(gguf_tensor("output_norm.weight", 3), 2**40), "beyond"),
    "gguf_missing_key": gguf_case(gguf_bytes(lambda b: b.replace(b"llama.embedding_length",
                                                                 b"llama.embedding_lengtX")),
                                  "missing GGUF key 'llama.embedding_length'"),
    "gguf_missing_tensor": gguf_case(gguf_bytes(lambda b: b.replace(b"blk.1.ffn_up.weight", b"blk.1.ffn_up.weighX")),
                                     "missing tensor 'blk.1.ffn_up.weight'"),
    "gguf_wrong_shape": gguf_case(lambda p, g: write_gguf(p, {**g.arrays, UP1: np.ascontiguousarray(g.arrays[UP1].T)},
                                                          CFG),
                                  "wrong shape for the config"),
    "gguf_a_folder": lambda tmp_path, good: ((tmp_path / "m.gguf").mkdir() or tmp_path / "m.gguf",
                                             tmp_path / "m.gguf", "a folder where a .gguf file is expected"),
    "gguf_nan_weights": gguf_case(lambda p, g: write_gguf(p, {**g.arrays, UP1: np.full_like(g.arrays[UP1], np.nan)},
                                                          CFG), "non-finite"),
    "gguf_tokenizer_beyond_embedding": small_embedding("gguf"),
    "gguf_no_tokenizer": gguf_case(gguf_bytes(lambda b: b.replace(b"tokenizer.ggml.tokens", b"tokenizer.ggml.tokenz")),
                                   "invalid tokenizer"),
}


@pytest.mark.parametrize("case", CASES)
def test_broken_files_get_one_clear_error(tmp_path, good, case):
    path, named, keyword = CASES[case](tmp_path, good)
    with pytest.raises(ModelFileError) as e:
        load_pretrained(path)
    assert type(e.value) is ModelFileError and issubclass(ModelFileError, ValueError)
    msg = str(e.value)
    assert str(named) in msg, msg
    assert keyword.replace("\\", "") in msg, msg


def test_truncated_files_at_any_cut(tmp_path, good):
    rng, size = np.random.default_rng(1), len(good.st)
    cuts = {0, 3, 7, 8, 9, 8 + good.n // 2, 8 + good.n, 8 + good.n + 1, size - 1, *rng.integers(0, size, 12).tolist()}
    for cut in sorted(cuts):
        path = tmp_path / f"cut{cut}.safetensors"
        path.write_bytes(good.st[:cut])
        with pytest.raises(ModelFileError, match="truncated") as e:
            read_safetensors(path)
        assert str(path) in str(e.value)
    gguf = good.gguf.read_bytes()
    for cut in sorted({0, 2, 4, 6, 8, 20, 30, 100, 1000, 5000, len(gguf) - 1,
                       *rng.integers(4, len(gguf), 12).tolist()}):
        path = tmp_path / f"cut{cut}.gguf"
        path.write_bytes(gguf[:cut])
        with pytest.raises(ModelFileError, match="not a GGUF file|corrupt GGUF") as e:
            load_pretrained(path)
        assert str(path) in str(e.value)


@pytest.mark.parametrize("kind", ["safetensors", "gguf"])
def test_corrupted_headers_load_or_raise_model_file_error(tmp_path, good, kind):
    """A few header bytes overwritten at random: the file loads, or gives a ModelFileError naming it; nothing else."""
    rng = np.random.default_rng(2)
    d = folder(tmp_path, good)
    src, end, path = ((good.st, 8 + good.n, d / "model.safetensors") if kind == "safetensors" else
                      (good.gguf.read_bytes(), good.gguf_header, tmp_path / "m.gguf"))
    for _ in range(25):
        b = bytearray(src)
        for i in rng.integers(0, end, rng.integers(1, 4)):
            b[i] = rng.integers(0, 256)
        path.write_bytes(bytes(b))
        try:
            load_pretrained(d if kind == "safetensors" else path)
        except ModelFileError as e:
            assert str(d if kind == "safetensors" else path) in str(e)


def test_hostile_lengths_raise_before_any_large_allocation(tmp_path, good):
    big = tmp_path / "big" / "model.safetensors"
    big.parent.mkdir()
    shutil.copy(good.hf / "config.json", big.parent)
    with open(big, "wb") as f:  # a sparse 300 MB file claiming a 200 MB header
        f.write(struct.pack("<Q", 200_000_000) + b"{")
        f.truncate(300_000_000)
    hostile = [(big.parent, "header too large")]
    for case in ("st_huge_header_length", "st_huge_shape", "st_offsets_beyond_file", "gguf_huge_array",
                 "gguf_huge_string", "gguf_huge_tensor_count", "gguf_huge_dims"):
        (tmp_path / case).mkdir()
        hostile.append(CASES[case](tmp_path / case, good)[::2])
    for path, keyword in hostile:
        tracemalloc.start()
        try:
            with pytest.raises(ModelFileError, match=keyword):
                load_pretrained(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 8_000_000, (path, peak)


def test_safetensors_alongside_a_pickle_still_load(tmp_path, good):
    d = folder(tmp_path, good)
    (d / "pytorch_model.bin").write_bytes(PICKLE)
    model, _ = load_pretrained(d)
    assert model.config == CFG
