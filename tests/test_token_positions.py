"""Word -> context positions with ComfyUI's SD1 / SD2 / SDXL tokenizers, checked against transformers'
CLIPTokenizer built straight from the vocabulary files ComfyUI ships (comfy/sd1_tokenizer; SD2 and SDXL use
the same files and differ only in padding)."""
import pytest
import safetensors.torch
import torch
from transformers import CLIPTokenizer

from harness.host import COMFY_DIR, import_comfy

import_comfy()
from comfy import sd1_clip, sdxl_clip  # noqa: E402
from comfy.text_encoders import sd2_clip  # noqa: E402

from aande_pack.aande_core.token_match import select_subjects  # noqa: E402
from aande_pack.nodes.compat import INDEX_ENCODER, tokenizer_family  # noqa: E402
from aande_pack.nodes.prompt.tokens import prompt_tokens  # noqa: E402

VOCAB = COMFY_DIR / "comfy" / "sd1_tokenizer"
HF = CLIPTokenizer(str(VOCAB / "vocab.json"), str(VOCAB / "merges.txt"))
TOKENIZERS = {"sd1": sd1_clip.SD1Tokenizer, "sd2": sd2_clip.SD2Tokenizer, "sdxl": sdxl_clip.SDXLTokenizer}
FAMILIES = list(TOKENIZERS)


@pytest.fixture(scope="module", params=FAMILIES)
def family_tok(request):
    return request.param, TOKENIZERS[request.param]()


def comfy_tokens(family, tok, text):
    """What the node sees: the family's tokenizer output -> (position, vocab string) list, context length."""
    tokens = tok.tokenize_with_weights(text, return_word_ids=True)
    assert tokenizer_family(tokens) == family
    key = INDEX_ENCODER[family]
    return prompt_tokens(getattr(tok, f"clip_{key}"), tokens[key], text)


def hf_ids(text):
    return HF(text)["input_ids"][1:-1]  # without start and end


def expected_layout(text):
    """Independent layout of a single-segment prompt: 75 prompt tokens per 77-wide chunk after its start token."""
    ids = hf_ids(text)
    return [((i // 75) * 77 + 1 + i % 75, piece) for i, piece in enumerate(HF.convert_ids_to_tokens(ids))]


def expected_position(text, word, occurrence=1, piece=1):
    """Position of sub-token `piece` of the `occurrence`-th whole-word `word` in `text`, by HF's ids."""
    ids, sub = hf_ids(text), hf_ids(word)
    layout = expected_layout(text)
    starts = [i for i in range(len(ids)) if ids[i:i + len(sub)] == sub
              and (i == 0 or layout[i - 1][1].endswith("</w>"))]
    return layout[starts[occurrence - 1] + piece - 1][0]


def select(family_tok, text, spec):
    family, tok = family_tok
    tokens, context_len = comfy_tokens(family, tok, text)
    return [m.position for m in select_subjects(tokens, spec, context_len)]


PLAIN = "a photo of a cat and a frog on a rock"


def test_plain_prompt_layout_matches_hf(family_tok):
    tokens, context_len = comfy_tokens(*family_tok, PLAIN)
    assert tokens == expected_layout(PLAIN)
    assert context_len == 77
    assert select(family_tok, PLAIN, "cat, frog") == [expected_position(PLAIN, "cat"), expected_position(PLAIN, "frog")]


def test_weights_and_escaped_parentheses(family_tok):
    weighted = "a photo of a (cat:1.3) and a ((frog)) on a [rock]"
    plain = "a photo of a cat and a frog on a [rock]"
    assert comfy_tokens(*family_tok, weighted)[0] == expected_layout(plain)
    assert select(family_tok, weighted, "cat, frog") == [expected_position(plain, "cat"), expected_position(plain, "frog")]
    escaped = r"a \(cat\) and a frog"
    literal = "a (cat) and a frog"  # the parentheses stay in the text as tokens
    assert comfy_tokens(*family_tok, escaped)[0] == expected_layout(literal)
    assert select(family_tok, escaped, "cat") == [expected_position(literal, "cat")]


def test_long_prompt_is_chunked(family_tok):
    filler = " ".join(["a green meadow with tall grass and flowers"] * 11)
    text = f"{filler} and a cat, then a porcupine beside a frog"
    assert len(hf_ids(text)) > 75
    tokens, context_len = comfy_tokens(*family_tok, text)
    assert tokens == expected_layout(text)
    assert context_len == 77 * 2
    got = select(family_tok, text, "cat, porcupine, frog")
    assert got == [expected_position(text, w) for w in ("cat", "porcupine", "frog")]
    assert all(p > 77 for p in got)


def test_repeated_and_multi_token_words(family_tok):
    text = "a cat sits next to a porcupine and another cat"
    assert len(hf_ids("porcupine")) > 1  # the premise: several BPE tokens
    assert select(family_tok, text, "cat#2") == [expected_position(text, "cat", occurrence=2)]
    assert select(family_tok, text, "porcupine") == [expected_position(text, "porcupine")]
    assert select(family_tok, text, "porcupine[2]") == [expected_position(text, "porcupine", piece=2)]


def test_padding_is_never_a_word_even_where_its_id_spells_a_word(family_tok):
    # SD2 and SDXL's G encoder pad with id 0, which is also the vocab's "!"
    text = "a cat!"
    tokens, _ = comfy_tokens(*family_tok, text)
    assert tokens == expected_layout(text)
    assert select(family_tok, text, "!") == [3]
    with pytest.raises(ValueError, match="token index 10 is an end or padding token"):
        select(family_tok, text, "10")


def test_embedding_occupies_its_vectors_and_shifts_later_words(tmp_path):
    vectors = torch.randn(3, 768, generator=torch.Generator().manual_seed(1))
    safetensors.torch.save_file({"clip_l": vectors}, str(tmp_path / "tiny_pet.safetensors"))
    tok = sd1_clip.SD1Tokenizer(embedding_directory=str(tmp_path))
    text = "a (embedding:tiny_pet:1.1) cat and a frog"
    tokens, _ = comfy_tokens("sd1", tok, text)
    expected = expected_layout("a cat and a frog")
    expected = expected[:1] + [(2 + i, f"embedding:tiny_pet[{i + 1}]") for i in range(3)] + \
        [(pos + 3, piece) for pos, piece in expected[1:]]
    assert tokens == expected
    chunks = tok.tokenize_with_weights(text)["l"]
    assert all(torch.equal(chunks[0][2 + i][0], vectors[i]) for i in range(3))  # really the file's vectors
    assert select(("sd1", tok), text, "cat, embedding:tiny_pet, embedding:tiny_pet[3]") == [5, 2, 4]


def test_weighted_group_that_does_not_fit_moves_to_the_next_chunk(family_tok):
    filler = " ".join(["a green meadow with tall grass and flowers"] * 9) + " blue sky"
    assert len(hf_ids(filler)) == 74  # premise: one free place left in chunk 1
    text = filler + " (red cat:1.2)"
    tokens, context_len = comfy_tokens(*family_tok, text)
    # ComfyUI keeps a short group whole: end token and padding close chunk 1, "red cat" opens chunk 2
    assert tokens == expected_layout(filler) + [(78, "red</w>"), (79, "cat</w>")]
    assert context_len == 154
    assert select(family_tok, text, "cat") == [79]
    with pytest.raises(ValueError, match="token index 75 is an end or padding token"):
        select(family_tok, text, "75")
