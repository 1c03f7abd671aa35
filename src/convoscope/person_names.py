"""A deterministic person-name detector: capitalisation patterns plus bundled name lists.

Names of private people must never be published (issue 11). This detector is the rule-based layer: it
does not depend on a model being right. Data: given names and surnames of ~80 locales from Faker's
person providers (MIT, `data/LICENSE-faker-names`), built by `scripts/build_name_lists.py`.

A name in the lists is "weak" when it is also an ordinary word ("Rice", "Will", "Grace") or a place,
month, brand or tech word ("Paris", "Jordan", "May", "Python"): weak names need more evidence.

Scope: cased scripts (Latin with diacritics, Greek, Cyrillic). Out of scope: uncased scripts (CJK,
Arabic, Hebrew, Indic, Thai), names written all in capitals or all in lowercase, and a lone given name
with no cue ("Questions about Maria"), which stays too ambiguous to flag.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

# Places, brands, tech, holidays and religious words that are also in the name lists: never a private person.
NON_PERSON_WORDS = frozenset("""
paris london berlin madrid rome roma milan florence venice vienna prague lisbon porto dublin york jersey
austin dallas houston denver phoenix orlando vegas boston chicago seattle atlanta miami detroit nashville memphis
charlotte raleigh jackson lincoln washington columbia victoria georgia jordan virginia carolina dakota indiana
montana nevada florida texas arizona sydney melbourne adelaide brisbane perth darwin hobart wellington auckland
chelsea sheffield kent devon chester lancaster windsor bristol hamilton regina vancouver toronto quebec india
china israel lebanon chad niger guinea mali cuba peru chile brazil france germany spain italy europe asia africa
america alexandria cairo sofia lima santiago salvador victoria everest amazon nile
python java ruby julia rust swift kotlin scala perl go dart haskell elixir erlang django flask rails excel word
outlook access teams alexa siri cortana linux ubuntu debian docker kubernetes jenkins ansible azure android
windows mac chrome firefox safari opera edge apache spark hadoop kafka pandas numpy react angular vue node
unity blender maya houdini tesla ford dell lenovo mercedes porsche ferrari lamborghini bentley chanel gucci
prada disney marvel netflix google apple microsoft oracle adobe zoom slack shopify wordpress nike adidas
honda toyota nissan mazda subaru volvo audi siemens philips samsung sony nokia intel nvidia cisco ibm
christmas easter hanukkah ramadan diwali thanksgiving halloween god jesus christ allah buddha santa claus
monday tuesday wednesday thursday friday saturday sunday january february march april may june july august
september october november december
""".split())

# Ordinary words that are also given names or surnames (the lists mark many more automatically).
COMMON_WORD_NAMES = frozenset("""
will mark bill grace hope faith joy chance chase hunter page rich sky summer winter autumn spring dawn river
stone storm rose lily daisy ivy holly olive ginger basil sage rosemary jasmine pepper honey candy brandy sherry
amber pearl crystal diamond jade opal coral angel star king prince princess queen duke earl baron major general
judge bishop pope cardinal dean marshall sterling penny buck cash money price banks bond law love ray gene
sandy rusty dusty cloud wolf fox hawk drake crane swan bird lamb park hall field wood woods hill hills brook
lake marsh moss heath bush baker cook carpenter mason taylor turner walker fisher hunter miller gardener
brown green white black gray grey young long short little small strong head hand foot day night west north
south east western eastern northern southern english french german irish welsh scott gold silver solar lunar
""".split())

SAINT_PREFIXES = frozenset("st saint san santa santo sankt são sao sainte ste".split())

# Titles that are followed by a name. Strict ones are rarely anything else; soft ones need more evidence.
STRICT_HONORIFICS = frozenset("mr mrs ms mx dr mme mlle sra srta sr herr frau hr fr dhr mevr dott sig sigra".split())
SOFT_HONORIFICS = frozenset("""
miss mister sir madam madame monsieur mademoiselle lady lord prof professor señor señora señorita senhor senhora
don doña dona signor signora signorina dottore dottoressa meneer mevrouw juffrouw pan pani bay bayan hanım bey
""".split())

# Words after which a capitalised word is a person ("my landlord Zebulon Quargmire", "me llamo Ana Ruiz").
CUE_WORDS = frozenset("""
named called name landlord landlady neighbour neighbor neighbours neighbors wife husband boss teacher doctor
son daughter friend colleague coworker manager girlfriend boyfriend mother father mom mum dad brother sister
tenant partner ex fiancé fiancée fiance fiancee uncle aunt cousin grandmother grandfather grandma grandpa nephew
niece therapist lawyer attorney employer employee supervisor classmate roommate flatmate stepfather stepmother
llamo llama nombre casero casera vecino vecina esposa esposo marido jefe jefa profesor profesora
appelle appelles propriétaire voisin voisine femme mari patron
chiamo chiama proprietario vicino vicina moglie capo
chamo chama nome vizinho vizinha marido chefe senhorio
heiße heisse heißt heisst vermieter vermieterin nachbar nachbarin ehefrau ehemann chef lehrer lehrerin
heet buurman buurvrouw huisbaas vrouw man baas
nazywam nazywa sąsiad sąsiadka żona mąż szef
adım komşum komşu patronum kocam karım
""".split())

# Lowercase particles inside names: "María de la Cruz", "Ludwig van Beethoven".
PARTICLES = frozenset("de da del della dei di do dos das du van von der den la le ter ten bin ibn al y e".split())

_TOKEN = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*(?:-[^\W\d_]+)*|\d+|[^\w\s]")
_POSSESSIVE = re.compile(r"['’]s$")
_SENTENCE_END = frozenset(".!?:;\"“”(«»\n")
_TITLE_CASE_SHARE = 0.6  # share of content words capitalised above which a text is written in title case


@lru_cache(maxsize=1)
def name_table() -> dict[str, str]:
    """lowercase name -> tags (g given, s surname, w also a common word, x also a place/month)."""
    raw = resources.files("convoscope").joinpath("data/person_names.txt.gz").read_bytes()
    table = {}
    for line in gzip.decompress(raw).decode("utf-8").splitlines():
        name, _, tags = line.partition("\t")
        table[name] = tags
    return table


@lru_cache(maxsize=1)
def listed_person_words() -> frozenset[str]:
    """Every given name or surname in the lists."""
    return frozenset(name for name, tags in name_table().items() if "g" in tags or "s" in tags)


def is_non_person_word(word: str) -> bool:
    """A place, month, brand or tech word (curated, or marked 'x' in the lists)."""
    word = word.lower()
    return word in NON_PERSON_WORDS or "x" in name_table().get(word, "")


def _name_kind(word: str) -> tuple[bool, bool, bool]:
    """(given name, surname, weak) for one word."""
    word = word.lower()
    tags = name_table().get(word, "")
    weak = "w" in tags or "x" in tags or word in NON_PERSON_WORDS or word in COMMON_WORD_NAMES
    return "g" in tags, "s" in tags, weak


@dataclass
class _Token:
    text: str
    start: int
    end: int
    sentence_start: bool
    after_newline: bool  # a line break ends a run: "Dive\nRachel" is two lines, not a name

    @property
    def base(self) -> str:  # without a possessive 's
        return _POSSESSIVE.sub("", self.text)

    @property
    def is_word(self) -> bool:
        return self.text[0].isalpha()

    @property
    def is_capitalised(self) -> bool:
        # "Maria", "O'Brien", "J" (an initial); not "NASA" or "AWS"
        return self.text[0].isupper() and (len(self.base) == 1 or not self.base.isupper())


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    previous = ""
    for m in _TOKEN.finditer(text):
        gap_has_newline = "\n" in text[tokens[-1].end if tokens else 0:m.start()]
        tokens.append(_Token(m.group(), m.start(), m.end(), not tokens or previous in _SENTENCE_END or gap_has_newline,
                             gap_has_newline))
        previous = m.group()
    return tokens


def _is_title_case(tokens: list[_Token]) -> bool:
    """Cluster names are often Written In Title Case: then capitals say little about names."""
    content = [t for t in tokens if t.is_word and not t.sentence_start and len(t.text) >= 4]
    return len(content) >= 2 and sum(t.is_capitalised for t in content) / len(content) >= _TITLE_CASE_SHARE


def _runs(tokens: list[_Token]) -> list[list[int]]:
    """Maximal runs of capitalised words (indices), joined by name particles and an honorific's or initial's period."""
    runs: list[list[int]] = []
    current: list[int] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t.after_newline and current:
            runs.append(current)
            current = []
        if t.is_word and t.is_capitalised:
            current.append(i)
        elif t.text == "." and current and i - 1 == current[-1] and _abbreviation(tokens[current[-1]].text) \
                and i + 1 < len(tokens) and tokens[i + 1].is_capitalised:
            pass  # "Dr. Smith", "J. Smith": the period does not end the run
        elif t.is_word and t.text in PARTICLES and current and i + 1 < len(tokens) and tokens[i + 1].is_capitalised:
            pass  # "de", "van" between two capitalised words
        else:
            if current:
                runs.append(current)
            current = []
        i += 1
    if current:
        runs.append(current)
    return runs


def _abbreviation(word: str) -> bool:
    return len(word) == 1 or word.lower() in STRICT_HONORIFICS or word.lower() in SOFT_HONORIFICS


def _honorific_span(run: list[int], tokens: list[_Token], title_case: bool) -> tuple[int, int] | None:
    """'Dr. Smith', 'Herr Müller', 'M. Dupont': an honorific and the capitalised words after it."""
    for k, idx in enumerate(run[:-1]):
        word = tokens[idx].text
        lower = word.lower()
        nxt = tokens[run[k + 1]].base
        if is_non_person_word(nxt):
            continue
        given, surname, weak = _name_kind(nxt)
        followed_by_period = idx + 1 < len(tokens) and tokens[idx + 1].text == "."
        strict = lower in STRICT_HONORIFICS or (word == "M" and followed_by_period)
        soft = lower in SOFT_HONORIFICS and (not title_case or ((given or surname) and not weak))
        if strict or soft:
            return idx, run[-1]
    return None


def _cue_span(run: list[int], tokens: list[_Token], title_case: bool) -> tuple[int, int] | None:
    """A cue word ('landlord', 'named', 'me llamo') before capitalised words."""
    cue_at = None
    if title_case:  # the cue is capitalised too, inside the run: "Landlord Zebulon Quargmire"
        for k, idx in enumerate(run[:-1]):
            if tokens[idx].text.lower() in CUE_WORDS:
                cue_at = k
        after = run[cue_at + 1:] if cue_at is not None else []
    else:
        before = run[0] - 1
        after = run if before >= 0 and tokens[before].text.lower() in CUE_WORDS else []
    after = [i for i in after if not tokens[i].sentence_start or i == after[0]]
    if not after or is_non_person_word(tokens[after[0]].base):
        return None
    kinds = [_name_kind(tokens[i].base) for i in after[:3]]
    known_strong = any((g or s) and not w for g, s, w in kinds)
    if title_case and not known_strong:
        return None  # "Landlord Tenant Disputes"
    if len(after) == 1 and not known_strong:
        return None  # "a library called Pandas": one unknown word is too little
    return after[0], after[min(len(after), 3) - 1]


def _pair_span(run: list[int], tokens: list[_Token], title_case: bool) -> tuple[int, int] | None:
    """Two adjacent capitalised words that look like Given Surname."""
    for k in range(len(run) - 1):
        a, b = tokens[run[k]], tokens[run[k + 1]]
        if a.base.lower() in SAINT_PREFIXES:
            continue  # "St Joseph Academy", "San Jose", "Santa Maria": places
        if is_non_person_word(b.base) and not _name_kind(a.base)[0]:
            continue
        ga, sa, wa = _name_kind(a.base)
        gb, sb, wb = _name_kind(b.base)
        # "Maria Lopez"; in running text also "Jordan Peterson" (in title case "Summer Camp" is not a name)
        given_surname = ga and (sb or gb) and (not wa if title_case else not (wa and wb))
        given_then_unknown = ga and not wa and not (gb or sb) and not is_non_person_word(b.base)  # "Maria Quargmire"
        strong_unknown = not title_case and ((ga or sa) and not wa or (gb or sb) and not wb) \
            and not is_non_person_word(a.base) and not is_non_person_word(b.base)
        if given_surname or given_then_unknown or strong_unknown:
            end = k + 1
            while end + 1 < len(run) and any(_name_kind(tokens[run[end + 1]].base)[:2]):
                end += 1  # "Maria del Carmen Lopez Garcia"
            return run[k], run[end]
    return None


def _possessive_span(run: list[int], tokens: list[_Token], title_case: bool) -> tuple[int, int] | None:
    """"Maria's insulin schedule": a known name in the possessive."""
    for idx in run:
        t = tokens[idx]
        if t.base == t.text:
            continue
        given, surname, weak = _name_kind(t.base)
        mid_sentence = not t.sentence_start and not title_case
        if (given or surname) and (not weak or mid_sentence) and not is_non_person_word(t.base):
            return idx, idx
    return None


def find_person_names(text: str) -> list[str]:
    """Spans of `text` that look like a person's name, in order, without repeats."""
    tokens = _tokens(text)
    title_case = _is_title_case(tokens)
    found: list[str] = []
    for run in _runs(tokens):
        for rule in (_honorific_span, _cue_span, _pair_span, _possessive_span):
            span = rule(run, tokens, title_case)
            if span is not None:
                name = text[tokens[span[0]].start:tokens[span[1]].end]
                if name not in found:
                    found.append(name)
                break
    return found


def is_person_name_term(term: str, capitalised_share: float) -> bool:
    """Whether a lowercase vocabulary term (a word or short n-gram) is a person's name.

    `capitalised_share`: the share of the term's occurrences not at a sentence start written capitalised.
    Rule: a word is a name when it is in the name lists, is not a place/month/brand/tech word, and is
    capitalised at least `capitalised_share_threshold` of the time (by default half): "maria" yes, "rice"
    (a surname, but written lowercase) no. An n-gram is a name when its first word is a given name, or all
    its words are names, under the same capitalisation rule. Words in no list ("quargmire", but also
    "kubernetes") are never called names here: capitalisation alone cannot tell a rare surname from a brand,
    so unknown words are left to the k-anonymity threshold (see keywords.build_keyword_index for the one
    exception: an always-capitalised word that follows a given name in an excluded n-gram).
    """
    return is_name_shaped_term(term) and capitalised_share >= CAPITALISED_SHARE_THRESHOLD


CAPITALISED_SHARE_THRESHOLD = 0.5


def is_name_shaped_term(term: str) -> bool:
    """Whether the words of a lowercase term are (known) person names, whatever their capitalisation."""
    words = term.split()
    if not words or listed_person_words().isdisjoint(words):  # the fast path: most terms hold no name
        return False
    if any(is_non_person_word(w) for w in words):
        return False
    kinds = [_name_kind(w) for w in words]
    if len(words) == 1:
        return kinds[0][0] or kinds[0][1]
    return kinds[0][0] or all(g or s for g, s, _ in kinds)
