"""The pure word -> position rules (aande_core/token_match.py) on hand-written CLIP token lists."""
import pytest

from aande_pack.aande_core.token_match import (embedding_piece, format_tokens, select_subjects, split_words,
                                               subject_forms, token_text)


def toks(*pieces, start=1):
    return [(start + i, p) for i, p in enumerate(pieces)]


# "a porcupine and a cat, a cat" as CLIP's BPE spells it
PROMPT = toks("a</w>", "por", "cup", "ine</w>", "and</w>", "a</w>", "cat</w>", ",</w>", "a</w>", "cat</w>")


def positions(tokens, spec, context_len=77):
    return [m.position for m in select_subjects(tokens, spec, context_len)]


def test_words_group_bpe_pieces_and_embedding_vectors():
    tokens = toks("a</w>", "por", "cup", "ine</w>", embedding_piece("pet", 1), embedding_piece("pet", 2),
                  embedding_piece("pet", 1), "cat</w>")
    words = split_words(tokens)
    assert [w.text for w in words] == ["a", "porcupine", "embedding:pet", "embedding:pet", "cat"]
    assert words[1].tokens == ((2, "por"), (3, "cup"), (4, "ine"))
    assert words[2].tokens == ((5, "embedding:pet[1]"), (6, "embedding:pet[2]"))  # a new [1] starts a new word
    assert words[3].tokens == ((7, "embedding:pet[1]"),)


def test_word_selects_first_subtoken_and_brackets_pick_another():
    assert positions(PROMPT, "porcupine") == [2]
    assert positions(PROMPT, "porcupine[3]") == [4]
    m = select_subjects(PROMPT, "porcupine", 77)[0]
    assert (m.token, m.span) == ("por", ((2, "por"), (3, "cup"), (4, "ine")))
    assert m.describe() == "porcupine -> 2:por (of 2:por 3:cup 4:ine)"


def test_repeated_words_and_occurrence_suffix():
    assert positions(PROMPT, "cat") == [7]
    assert positions(PROMPT, "cat#2") == [10]
    assert positions(PROMPT, "CAT#1") == [7]  # case-insensitive, as CLIP lower-cases the prompt


def test_words_indices_and_mixed_items_keep_their_order():
    assert positions(PROMPT, "cat, porcupine") == [7, 2]
    assert positions(PROMPT, "2,7") == [2, 7]
    assert positions(PROMPT, "2 7, cat#2") == [2, 7, 10]
    assert [m.token for m in select_subjects(PROMPT, "3, cat", 77)] == ["cup", "cat"]


def test_word_must_be_whole_but_may_span_clip_words():
    shirt = toks("a</w>", "t</w>", "-</w>", "shirt</w>", "and</w>", "a</w>", "wild", "cat</w>")
    assert positions(shirt, "t-shirt") == [2]
    assert positions(shirt, "t-shirt[3]") == [4]
    with pytest.raises(ValueError, match=r"only appears inside 'wildcat' \(7:wild 8:cat\)"):
        select_subjects(shirt, "cat", 77)


def test_phrase_selects_its_first_token_and_hints_at_commas():
    bear = toks("a</w>", "teddy</w>", "bear</w>", "and</w>", "a</w>", "frog</w>")
    assert positions(bear, "teddy bear") == [2]
    assert positions(bear, "teddy  bear[2]") == [3]
    with pytest.raises(ValueError, match="separate subjects with commas: 'cat, frog'"):
        select_subjects(bear, "bear frog", 77)


def test_embedding_subject_selects_its_vectors():
    tokens = toks("a</w>", embedding_piece("my_pet", 1), embedding_piece("my_pet", 2), "cat</w>")
    assert positions(tokens, "embedding:my_pet") == [2]
    assert positions(tokens, "embedding:my_pet[2], cat") == [3, 4]


def test_missing_subject_lists_the_prompt_tokens_with_positions():
    plain = toks("a</w>", "cat</w>", "and</w>", "a</w>", "frog</w>")
    with pytest.raises(ValueError) as e:
        select_subjects(plain, "dog", 77)
    assert "subject 'dog' is not in the prompt" in str(e.value)
    assert "1:a 2:cat 3:and 4:a 5:frog" in str(e.value)


def test_occurrence_beyond_count_says_how_many_exist():
    with pytest.raises(ValueError, match=r"occurrence 3 of 'cat', but the prompt has only 2 \(at 7, 10\)"):
        select_subjects(PROMPT, "cat#3", 77)


def test_subtoken_beyond_word_length_shows_all_subtokens():
    with pytest.raises(ValueError, match=r"has 3 token\(s\) \(2:por 3:cup 4:ine\), so \[4\] is out of range"):
        select_subjects(PROMPT, "porcupine[4]", 77)


@pytest.mark.parametrize("spec, message", [
    ("0", "token index 0 is a start token"),
    ("77", "token index 77 is a start token"),
    ("11", "token index 11 is an end or padding token"),
    ("76", "token index 76 is an end or padding token"),
    ("154", r"outside the text context \(0..153\)"),
    ("-1", "outside the text context"),
])
def test_indices_on_special_tokens_or_outside_are_refused(spec, message):
    with pytest.raises(ValueError, match=message) as e:
        select_subjects(PROMPT, spec, 154)
    assert "1:a 2:por 3:cup 4:ine 5:and" in str(e.value)


@pytest.mark.parametrize("spec", ["", "  ", " , ,"])
def test_empty_selection_is_refused(spec):
    with pytest.raises(ValueError, match="no subject given"):
        select_subjects(PROMPT, spec, 77)


@pytest.mark.parametrize("spec, message", [
    ("cat, 7", "'cat' and '7' both select token 7:cat"),
    ("cat[2]#2", "cannot read subject 'cat\\[2\\]#2'"),
    ("cat#0", "count from 1"),
    ("porcupine[0]", "count from 1"),
    ("#2", "cannot read subject"),
])
def test_bad_specs_name_the_fix(spec, message):
    with pytest.raises(ValueError, match=message):
        select_subjects(PROMPT, spec, 77)


def test_byte_level_pieces_decode_to_readable_text():
    # CLIP spells UTF-8 bytes with printable stand-ins: "café" is "cafÃ©", "naïve" is na + Ã¯ + ve
    tokens = toks("cafÃ©</w>", "na", "Ã¯", "ve</w>")
    assert [w.text for w in split_words(tokens)] == ["café", "naïve"]
    assert token_text("cafÃ©</w>") == "café"
    assert format_tokens(tokens) == "1:café 2:na 3:ï 4:ve"
    assert positions(tokens, "Naïve") == [2]


def test_forms_name_each_token_by_word_occurrence_and_piece():
    # "a porcupine and a cat, a cat" (PROMPT above): the comma has no word form, so it keeps its index
    assert subject_forms(PROMPT) == ["a", "porcupine", "porcupine[2]", "porcupine[3]", "and", "a#2", "cat", "8",
                                     "a#3", "cat#2"]
    twice = toks("a</w>", "por", "cup", "ine</w>", "a</w>", "por", "cup", "ine</w>")
    assert subject_forms(twice) == ["a", "porcupine", "porcupine[2]", "porcupine[3]",
                                    "a#2", "porcupine#2", "porcupine#2[2]", "porcupine#2[3]"]


def test_forms_of_embeddings_name_the_embedding_and_its_vector():
    tokens = toks("a</w>", embedding_piece("My_Pet", 1), embedding_piece("My_Pet", 2), "cat</w>",
                  embedding_piece("My_Pet", 1), embedding_piece("My_Pet", 2))
    assert subject_forms(tokens) == ["a", "embedding:my_pet", "embedding:my_pet[2]", "cat",
                                     "embedding:my_pet#2", "embedding:my_pet#2[2]"]


def test_forms_count_occurrences_as_the_resolver_does():
    # "ca" + "t" also spells "cat" (as t + - + shirt spells "t-shirt"), so the word "cat" is its second occurrence
    tokens = toks("ca</w>", "t</w>", "cat</w>")
    assert subject_forms(tokens) == ["ca", "t", "cat#2"]
    assert positions(tokens, "cat") == [1]


def test_tokens_the_syntax_cannot_express_keep_their_index():
    # "#", "[", "]" and "," are syntax; a number is read as an index ("5" here is token 2, not 5), so its
    # later occurrence can still be named ("5#2"), but not its first
    tokens = toks("x</w>", "5</w>", "#</w>", "[</w>", "]</w>", ",</w>", "5</w>")
    assert subject_forms(tokens) == ["x", "2", "3", "4", "5", "6", "5#2"]


@pytest.mark.parametrize("tokens", [PROMPT, toks("a</w>", "t</w>", "-</w>", "shirt</w>", "and</w>", "a</w>",
                                                 "wild", "cat</w>", "cat</w>", "cafÃ©</w>", "na", "Ã¯", "ve</w>"),
                                    toks(*["a</w>", "cat</w>", "1</w>", "(</w>"] * 15)])
def test_every_form_selects_exactly_its_token(tokens):
    forms = subject_forms(tokens)
    assert len(forms) == len(tokens)
    for (pos, _), form in zip(tokens, forms):
        assert positions(tokens, form, context_len=154) == [pos], form
