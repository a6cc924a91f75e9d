"""Subject words -> text-context positions, matched on the tokens ComfyUI's CLIP tokenizer produced.

Pure (no ComfyUI): the node passes the prompt's own tokens as (context position, vocab string) pairs, in
order, without start/end/padding tokens. Vocab strings are CLIP's byte-level BPE pieces: "cat</w>",
or "por", "cup", "ine</w>" for "porcupine" ("</w>" ends a word). A vector of a textual-inversion
embedding is passed as embedding_piece(name, i), i counting from 1.

What a subject item selects (items are separated by commas):
  "5" or "2 5"     the token(s) at these context positions (index form; the start token is 0)
  "cat"            the FIRST token of the first occurrence of the word "cat"
  "cat#2"          ... of the second occurrence
  "porcupine[2]"   the second token of "porcupine" (por, cup, ine -> cup); "cat#2[2]" combines both
  "teddy bear"     a phrase: its first token ("teddy bear[2]" -> bear)
  "embedding:name" the first vector of that embedding ("embedding:name[2]" the second)
subject_forms() goes the other way, for the token picker: per token, the item that selects exactly it.
A word matches whole prompt words, case-insensitively; "t-shirt" matches CLIP's three words t, -, shirt.
Why the first sub-token: in a causal text encoder the first piece of a word is the one every later
piece and word attends back to, and it is the piece that names the word's start, so its cross-attention
map is the most reliable handle on the object; "[k]" picks another piece when it is the better one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from .selection import TokenSelection, format_listing

END_OF_WORD = "</w>"
_EMBED_PIECE = re.compile(r"^embedding:(.+)\[(\d+)\]$")
_INDEX_ITEM = re.compile(r"^[+-]?\d+(?:\s+[+-]?\d+)*$")
_WORD_ITEM = re.compile(r"^(?P<phrase>.*?)(?:#(?P<occ>\d+))?(?:\[(?P<piece>\d+)\])?$", re.S)
SYNTAX_HELP = ("write subjects as words or indices separated by commas, e.g. 'cat, frog', 'cat#2' for the "
               "second 'cat', 'porcupine[2]' for a word's second token, or '2,5'")


def embedding_piece(name: str, i: int) -> str:
    """The token string for vector i (from 1) of embedding `name`."""
    return f"embedding:{name}[{i}]"


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """CLIP's byte-level alphabet (the GPT-2 table): each UTF-8 byte is spelled by one printable character."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = list(bs)
    extra = [b for b in range(256) if b not in bs]
    bs += extra
    cs += [256 + n for n in range(len(extra))]
    return {chr(c): b for b, c in zip(bs, cs)}


def _decode(body: str) -> str:
    dec = _byte_decoder()
    if not all(ch in dec for ch in body):
        return body
    return bytes(dec[ch] for ch in body).decode("utf-8", errors="replace")


def token_text(piece: str) -> str:
    """Readable text of one token: UTF-8 decoded, without the end-of-word mark."""
    if _EMBED_PIECE.match(piece):
        return piece
    return _decode(piece[:-len(END_OF_WORD)] if piece.endswith(END_OF_WORD) else piece)


@dataclass(frozen=True)
class Word:
    text: str                       # lower-case readable text ("porcupine", "embedding:name")
    tokens: tuple[tuple[int, str], ...]  # (context position, readable piece) per token


def split_words(tokens) -> list[Word]:
    """Group tokens into CLIP's words: BPE pieces up to one ending in "</w>"; an embedding's vectors."""
    words, run, run_embed = [], [], None

    def flush():
        nonlocal run, run_embed
        if run:
            if run_embed is not None:
                text = f"embedding:{run_embed}"
            else:
                text = _decode("".join(p[:-len(END_OF_WORD)] if p.endswith(END_OF_WORD) else p for _, p in run))
            words.append(Word(text.lower(), tuple((pos, token_text(p)) for pos, p in run)))
        run, run_embed = [], None

    for pos, piece in tokens:
        emb = _EMBED_PIECE.match(piece)
        if emb:
            if not (run_embed == emb.group(1) and int(emb.group(2)) == len(run) + 1):
                flush()
            run.append((pos, piece))
            run_embed = emb.group(1)
            continue
        if run_embed is not None:
            flush()
        run.append((pos, piece))
        if piece.endswith(END_OF_WORD):
            flush()
    flush()
    return words


def format_tokens(tokens) -> str:
    """"1:a 2:cat 3:and" for error messages and logs."""
    return format_listing((pos, token_text(piece)) for pos, piece in tokens)


def _format_word_tokens(span) -> str:
    return " ".join(f"{pos}:{text}" for pos, text in span)


@dataclass(frozen=True)
class Match:
    item: str                       # the subject item as written, e.g. "porcupine"
    position: int                   # selected context position
    token: str                      # readable text of the selected token
    span: tuple[tuple[int, str], ...]  # all (position, piece) of the matched word or phrase

    def describe(self) -> str:
        if len(self.span) == 1:
            return f"{self.item} -> {self.position}:{self.token}"
        return f"{self.item} -> {self.position}:{self.token} (of {_format_word_tokens(self.span)})"


def select_subjects(tokens, spec: str, context_len: int) -> list[Match]:
    """Resolve a subject spec against the prompt's tokens; ValueError names the problem and the fix."""
    return _Prompt(tokens).select(spec, context_len)


class _Prompt:
    """A prompt's tokens, its words, and the occurrences of each phrase, each found once: subject_forms resolves
    one form per token, and splitting the words or scanning for a phrase per form would be quadratic."""

    def __init__(self, tokens):
        self.tokens = [(int(pos), piece) for pos, piece in tokens]
        self.words = split_words(self.tokens)
        self._found: dict[tuple[str, ...], list[tuple[int, int]]] = {}

    def occurrences(self, parts: tuple[str, ...]) -> list[tuple[int, int]]:
        if parts not in self._found:
            self._found[parts] = _occurrences(parts, self.words)
        return self._found[parts]

    def select(self, spec: str, context_len: int) -> list[Match]:
        tokens, words = self.tokens, self.words
        items = [item.strip() for item in (spec or "").split(",")]
        items = [item for item in items if item]
        if not items:
            raise ValueError("no subject given: " + SYNTAX_HELP + f". The prompt's tokens are: {format_tokens(tokens)}")
        out: list[Match] = []
        for item in items:
            if _INDEX_ITEM.match(item):
                out.extend(_by_index(int(p), item, tokens, words, context_len) for p in item.split())
            else:
                out.append(_by_word(item, self))
        seen: dict[int, Match] = {}
        for m in out:
            if m.position in seen:
                first = seen[m.position]
                raise ValueError(f"'{first.item}' and '{m.item}' both select token {m.position}:{m.token}; "
                                 "list each subject once")
            seen[m.position] = m
        return out


def subject_forms(tokens) -> list[str]:
    """Per token, in order, the subject item that selects exactly that token: its word form ("cat", "cat#2",
    "porcupine[2]", "cat#2[2]", "embedding:name[2]") where select_subjects resolves that form back to the token,
    else its index ("5").

    Why words: a word follows the prompt when it is edited, an index does not. Why the round trip: a form is
    only written if it means that token, so a comma, "#", brackets, a number or any word the syntax cannot
    express falls back to the index, which is always exact.
    """
    prompt = _Prompt(tokens)
    forms = []
    for i, word in enumerate(prompt.words):
        for piece, (pos, _) in enumerate(word.tokens, start=1):
            form = _word_form(prompt, i, piece)
            forms.append(form if form is not None and _selects_only(prompt, form, pos) else str(pos))
    return forms


def _word_form(prompt: _Prompt, word: int, piece: int) -> str | None:
    """"text#occurrence[piece]" for a piece of prompt.words[word], #1 and [1] left out; None when no
    occurrence of the word's text starts at that word."""
    text = prompt.words[word].text
    starts = [start for start, _ in prompt.occurrences((text,))] if text.strip() else []
    if word not in starts:
        return None
    occ = starts.index(word) + 1
    return text + (f"#{occ}" if occ > 1 else "") + (f"[{piece}]" if piece > 1 else "")


def _selects_only(prompt: _Prompt, form: str, position: int) -> bool:
    try:
        # context length 0: only index items read it, and an index that is not a prompt token is refused anyway
        return [m.position for m in prompt.select(form, 0)] == [position]
    except ValueError:
        return False


def _word_of(position: int, words) -> Word:
    return next(w for w in words if any(p == position for p, _ in w.tokens))


def _by_index(p: int, item: str, tokens, words, context_len: int) -> Match:
    pieces = dict(tokens)
    if p in pieces:
        return Match(item if item.strip() == str(p) else str(p), p, token_text(pieces[p]), _word_of(p, words).tokens)
    TokenSelection((p,), prompt_indices=tuple(pieces), prompt_tokens=tuple(token_text(t) for t in pieces.values()),
                   context_len=context_len).check()
    raise ValueError(f"token index {p}: the prompt has no tokens to select")


def _parse_word_item(item: str) -> tuple[tuple[str, ...], int, int]:
    m = _WORD_ITEM.match(item)
    phrase = m.group("phrase").strip()
    if not phrase or any(ch in phrase for ch in "#[]"):
        raise ValueError(f"cannot read subject '{item}': {SYNTAX_HELP} (occurrence before token: 'cat#2[2]')")
    occ, piece = int(m.group("occ") or 1), int(m.group("piece") or 1)
    if occ < 1 or piece < 1:
        raise ValueError(f"subject '{item}': '#n' and '[k]' count from 1")
    return tuple(phrase.lower().split()), occ, piece


def _occurrences(parts, words) -> list[tuple[int, int]]:
    """(first word, end word) of each place where the parts match whole consecutive words."""
    found = []
    for start in range(len(words)):
        j, ok = start, True
        for part in parts:
            acc = ""
            while j < len(words) and len(acc) < len(part):
                acc += words[j].text
                j += 1
            if acc != part:
                ok = False
                break
        if ok:
            found.append((start, j))
    return found


def _by_word(item: str, prompt: _Prompt) -> Match:
    tokens, words = prompt.tokens, prompt.words
    parts, occ, piece = _parse_word_item(item)
    phrase = " ".join(parts)
    found = prompt.occurrences(parts)
    if not found:
        hint = ""
        if len(parts) > 1:
            hint = " (a subject with spaces is one phrase; separate subjects with commas: 'cat, frog')"
        else:
            inside = [w for w in words if parts[0] in w.text]
            if inside:
                hint = (f" ('{phrase}' only appears inside "
                        + ", ".join(f"'{w.text}' ({_format_word_tokens(w.tokens)})" for w in inside)
                        + "; select that word or an index)")
        raise ValueError(f"subject '{phrase}' is not in the prompt{hint}; the prompt's tokens are: "
                         f"{format_tokens(tokens)}")
    if occ > len(found):
        at = ", ".join(str(words[s].tokens[0][0]) for s, _ in found)
        n = len(found)
        raise ValueError(f"'{item}' asks for occurrence {occ} of '{phrase}', but the prompt has only {n} "
                         f"(at {at}); use '{phrase}#1'" + (f"..'{phrase}#{n}'" if n > 1 else ""))
    start, end = found[occ - 1]
    span = tuple(t for w in words[start:end] for t in w.tokens)
    if piece > len(span):
        raise ValueError(f"'{item}': '{phrase}' has {len(span)} token(s) ({_format_word_tokens(span)}), "
                         f"so [{piece}] is out of range; use [1]..[{len(span)}]")
    pos, text = span[piece - 1]
    return Match(item, pos, text, span)
