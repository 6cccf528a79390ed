"""Conversations: follow-up questions resolved against the turns before them, then searched.

People ask a chat box the way they talk: "Who are the parties to the eDiets agreement?", then "and when does
it expire?", then "which law governs it?". Searched as typed, the follow-ups name no document and no subject,
and retrieval over a library draws on whichever contract matches the words best. So before retrieval a
follow-up is resolved into a `Search`: the text to search and the one document to keep to.

The rule (`resolve`), which needs no model (the embedded 135M one echoes its prompt when asked to rewrite):

- The document. A question that names a document of the library (its file name, or a word of the name that
  no other document's name has: "eDiets", "Sandridge", "remote control") searches that document. A question
  about the library ("which agreements ...", "all documents") searches all of it. Any other question
  searches the document in focus: the one the user put there (`Conversation.focus_on`: a document just
  uploaded, or chosen), else the one the previous answer drew from (its quote's document, else its best
  passage's). `Conversation.widen` searches the whole library until an answer draws from one document again.
- The text. A follow-up with no subject of its own ("Who proposed that?", "Why?", "How long?": nothing but
  question words, pronouns and common verbs) gets the previous question's subject joined to it in
  parentheses: "Who proposed that? (remote control buttons)". One that asks "what about X" keeps the
  previous question beside it: "What about the renewal term? (When does it expire?)". Anything else is
  searched as typed.

With `followup_rewrite = "model"` the generator writes the follow-up as a question that stands alone, from
the previous question and answer, for a model that can (benchmarks/bench_followups.py measures both); the
document is still chosen by the rule, and an empty or runaway rewrite falls back to the rule's text.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from app.answer import Answer, Search
from app.errors import require_question

if TYPE_CHECKING:
    from app.engine import QueryEngine

_WORD = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?")
# Words that carry no subject: question words, auxiliaries, pronouns, function words.
_FUNCTION = frozenset("""
a an the and or but nor so yet of in on at to for from by with without about into onto over under than then as
if is are was were be been being am do does did done have has had having can could may might must shall should
will would what which who whom whose when where why how whether that this these those it its it's they them
their theirs he him his she her hers we us our you your i me my mine there here one ones any some such same
also else more most much many very just only not no yes please tell me say said says again
""".split())
# Verbs and adjectives that ask about a subject without being one: "who proposed that?", "how long?".
_GENERIC = frozenset("""
mean means meant happen happens happened propose proposes proposed suggest suggests suggested decide decides
decided think thinks thought explain explains explained ask asks asked agree agrees agreed want wants wanted
mention mentions mentioned talk talks talked discuss discusses discussed raise raises raised make makes made
give gives gave get gets got go goes went come comes came know knows knew see sees saw find finds found show
shows showed need needs needed happen exactly long often soon later earlier before after else about detail
details describe described elaborate example examples reason reasons
""".split())
# Words that name a kind of document, not one document: no use for telling documents apart.
_DOC_KINDS = frozenset("""
agreement agreements contract contracts document documents doc docs file files meeting meetings call calls
transcript transcripts report reports exhibit ex inc corp co ltd llc txt pdf docx md html htm vtt srt
services service operations maintenance license licence ip distributor supply design
""".split())
_LIBRARY = re.compile(r"\b(?:which|what|any|all|both|every|each|other|across|compare)\s+(?:of\s+)?(?:the\s+|my\s+)?"
                      r"(?:agreements|contracts|documents|files|meetings|transcripts|reports)\b"
                      r"|\b(?:the|my|whole|entire)\s+library\b", re.IGNORECASE)
_WHAT_ABOUT = re.compile(r"^\s*(?:and\s+)?(?:what|how)\s+about\b|^\s*(?:and\s+)?(?:same|likewise)\s+for\b"
                         r"|^\s*and\s+for\b", re.IGNORECASE)

REWRITE_SYSTEM = ("You rewrite the user's last question so that it can be understood without the conversation. "
                  "Reply with the rewritten question only.")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("_", " ").replace("-", " "))


def content_words(question: str) -> list[str]:
    """The words of a question that carry its subject, in order, once each."""
    return list(dict.fromkeys(w for w in words(question)
                              if w not in _FUNCTION and w not in _GENERIC and not w.isdigit() and len(w) > 1))


def name_words(name: str) -> set[str]:
    """The words of a document's file name that could name it in a question."""
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return {w for w in re.findall(r"[a-z]+", stem.lower()) if len(w) >= 4 and w not in _DOC_KINDS}


def named_document(question: str, names: Sequence[Sequence[str]]) -> int | None:
    """The index of the one document the question names, or None.

    Args:
        names: each document's names (a document stored once under several names answers to each).

    A name counts when the question holds the whole file name, or a word of the name that no other document's
    name holds, or the start of one (at least five letters: "SandRidge" finds SANDRIDGEENERGYINC_...), words of
    the question joined too ("Optimized Transportation Management" finds OPTIMIZEDTRANSPORTATIONMANAGEMENT,INC).
    The document with the most such words wins; a tie names none.
    """
    lowered = question.lower()
    asked = words(question)
    spans = {"".join(asked[i:j]) for i in range(len(asked)) for j in range(i + 1, min(i + 4, len(asked)) + 1)}
    spans -= _FUNCTION | _GENERIC | _DOC_KINDS  # "agreement" starts no name
    vocab = [set().union(*(name_words(n) for n in doc_names)) for doc_names in names]
    holders = Counter(w for words_of_one in vocab for w in words_of_one)  # how many documents' names hold a word
    counts = {}
    for i, doc_names in enumerate(names):
        if any(n.lower() in lowered for n in doc_names):
            return i
        own = (w for w in vocab[i] if holders[w] == 1)
        hits = {w for w in own if any(w == s or (len(s) >= 5 and w.startswith(s)) for s in spans)}
        if hits:
            counts[i] = len(hits)
    if not counts:
        return None
    best = max(counts.values())
    winners = [i for i, c in counts.items() if c == best]
    return winners[0] if len(winners) == 1 else None


_TOKEN = re.compile(r"[\w'’]+(?:-[\w'’]+)*")
# the nouns a question names a document with: "the eDiets co-branding agreement", "the design meeting"
_NAMED_KIND = re.compile(r"(?:agreement|contract|lease|plan|amendment|meeting|call|transcript|report|document|"
                         r"filing)s?", re.IGNORECASE)


def unnamed(question: str, name: str) -> str:
    """`question` without the words naming the document `name` it searches, for searching inside that document.

    A user names the document they ask about ("Which law governs the eDiets co-branding agreement?"). Once the
    search keeps to that document, those words say nothing of where the answer is, but they match the passages
    that mention the company or the title: on the 32 dev contracts' governing-law questions asked with the
    document named, the governing-law clause was among the five passages for 13 as typed and 30 without the
    naming words (benchmarks/bench_named.py). Only a name written as a name is dropped: the words just before a
    noun that names a document ("agreement", "meeting", kept itself), one of them a word of its file name
    (`name_words`, or the start of one: "Sandridge" for SANDRIDGEENERGYINC); "what did the team decide about the
    remote control?" keeps its subject, the remote control, even in ami_remote_control_design_meeting.txt.
    """
    own = name_words(name)

    def names(token: str) -> bool:
        return any(w in own or (len(w) >= 5 and any(o.startswith(w) for o in own)) for w in words(token))

    def kind(token: str) -> bool:
        return all(w in _DOC_KINDS for w in words(token))

    tokens = list(_TOKEN.finditer(question))
    drop = [(tokens[first].start(), tokens[i].start())
            for first, i in _before_document_nouns([t.group() for t in tokens], lambda t: names(t) or kind(t))
            if any(names(t.group()) for t in tokens[first:i])]
    for start, end in reversed(drop):
        question = question[:start] + question[end:]
    return question


def _before_document_nouns(tokens: list[str], part_of_name: Callable[[str], bool]) -> Iterator[tuple[int, int]]:
    """For each token that is a noun naming a document ("agreement", "meeting"), at index i, the run of tokens
    just before it that `part_of_name` admits, as (first, i): tokens[first:i] are the words that may name it."""
    for i, token in enumerate(tokens):
        if _NAMED_KIND.fullmatch(token):
            first = i
            while first > 0 and part_of_name(tokens[first - 1]):
                first -= 1
            yield first, i


def naming_words(question: str) -> str:
    """The words with which `question` names a document, whichever it is: those just before a noun that names a
    document ("agreement", "meeting"), back to the first word of the question's frame ("the", "of"): "services"
    in "the parties to the services agreement", "eDiets co-branding" in "the eDiets co-branding agreement",
    nothing in "the parties to this agreement" or "about the remote control"."""
    tokens = [t.group() for t in _TOKEN.finditer(question)]
    return " ".join(word for first, i in _before_document_nouns(tokens, lambda t: t.lower() not in _FUNCTION)
                    for word in tokens[first:i])


def asks_library(question: str) -> bool:
    """Whether the question is about the library rather than one document ("which agreements ...")."""
    return bool(_LIBRARY.search(question))


def drew_from(answer: Answer) -> str | None:
    """The document an answer drew from: its quote's, else its best passage's; None for a failed or refused one."""
    if answer.error or answer.abstained or not answer.passages:
        return None
    if answer.quote is not None:
        return answer.quote.doc
    return min(answer.passages, key=lambda p: p.rank).doc


def searched_line(answer: Answer, name: Callable[[str], str] = str) -> str | None:
    """"Searched X" (a document, `name`d as the caller shows names, or the whole library), with the follow-up as
    searched when it was resolved, and why: what the page and the terminal chat print under an answer."""
    s = answer.searched
    if s is None:
        return None
    line = f"Searched {name(s.doc) if s.doc else 'the whole library'}"
    if s.question != answer.question:
        line += f" for “{s.question}”"
    return line + (f" ({s.why})" if s.why else "")


def resolve(question: str, previous: Search | None, focus: str | None, names: Sequence[Sequence[str]]) -> Search:
    """The rule: which document a question searches and what text (see the module docstring).

    Args:
        question: as typed.
        previous: what the previous turn searched (None for a first question).
        focus: the document in focus (None: the whole library).
        names: every document's names, in the library's order.

    Example:
        >>> meeting = "ami_remote_control_design_meeting.txt"
        >>> prev = Search("Which buttons did the team decide the remote control should have?", None)
        >>> resolve("Who proposed that?", prev, meeting, [[meeting]]).question
        'Who proposed that? (buttons team remote control)'
    """
    named = named_document(question, names)
    if named is not None:
        doc, why = names[named][0], "the document the question names"
    elif asks_library(question):
        doc, why = None, "the question is about the library"
    elif focus is not None:
        doc, why = focus, "the document in focus"
    else:
        doc, why = None, "no document in focus"
    text = question.strip()
    if previous is not None:
        own = [w for w in content_words(question) if not (doc and w in name_words(doc))]
        if _WHAT_ABOUT.search(question):
            text, why = f"{text} ({previous.question})", why + "; the previous question joined"
        elif not own:
            naming = name_words(previous.doc) if previous.doc else set()
            subject = [w for w in content_words(previous.question) if w not in naming and w not in _DOC_KINDS]
            if subject:
                text, why = f"{text} ({' '.join(subject)})", why + "; the previous question's subject joined"
    return Search(question=text, doc=doc, why=why)


class Conversation:
    """Questions asked one after another, each follow-up resolved against the ones before it.

    Made by `LongDocQA.chat()`; keeps its turns (`turns`, the Answers) and the document in focus (`focus`).

    Example:
        >>> chat = qa.chat()                                                           # doctest: +SKIP
        >>> chat.ask("Who are the parties to the eDiets agreement?").passages[0].doc   # doctest: +SKIP
        'ediets_co-branding_agreement.txt'
        >>> a = chat.ask("When does it expire?")                                       # doctest: +SKIP
        >>> a.searched.doc, a.searched.why                                             # doctest: +SKIP
        ('ediets_co-branding_agreement.txt', 'the document in focus')
        >>> chat.focus_on(qa.ingest("msa.pdf").ingested[0].name)   # a fresh upload: in focus  # doctest: +SKIP
        >>> chat.widen()                                           # the whole library again  # doctest: +SKIP
    """

    def __init__(self, engine: QueryEngine, doc: str | None = None, **options: Any) -> None:
        self._engine = engine
        self._options = options
        self.turns: list[Answer] = []
        self.focus: str | None = None
        if doc is not None:
            self.focus_on(doc)

    def focus_on(self, doc: str | None) -> None:
        """Search `doc` (a name or id in the library) from the next question on; None searches the library."""
        self.focus = self._engine.resolve_doc(doc).name if doc is not None else None

    def widen(self) -> None:
        """Search the whole library from the next question on (until an answer draws from one document)."""
        self.focus = None

    def resolve(self, question: str) -> Search:
        """What `question` would search now: the rule's `Search`, its text rewritten by the model when
        `followup_rewrite = "model"` and there is a previous turn."""
        names = [d.names for d in self._engine.store.documents()]
        last = next((t for t in reversed(self.turns) if t.searched is not None and not t.error), None)
        search = resolve(question, last.searched if last else None, self.focus, names)
        if last is not None and self._engine.settings.followup_rewrite == "model":
            rewritten = self._rewrite(question, last)
            if rewritten:
                search = Search(question=rewritten, doc=search.doc, why=search.why.split(";")[0] +
                                "; rewritten by the model")
        return search

    def stream(self, question: str, **options: Any) -> Iterator[str | Answer]:
        """Like `LongDocQA.stream`, for the next turn: resolved, searched, then kept in `turns`."""
        require_question(question)
        search = self.resolve(question)
        for event in self._engine.stream(question, search=search, **(self._options | options)):
            if isinstance(event, Answer):
                self._keep(event)
            yield event

    def ask(self, question: str, **options: Any) -> Answer:
        """Answer the next question of the conversation (options as `LongDocQA.ask`, except `doc`)."""
        *_, answer = self.stream(question, **options)
        return answer

    def _keep(self, answer: Answer) -> None:
        self.turns.append(answer)
        source = drew_from(answer)
        if answer.searched is not None and answer.searched.doc is not None:
            self.focus = answer.searched.doc
        elif source is not None:
            self.focus = source

    def _rewrite(self, question: str, last: Answer) -> str:
        """The model's stand-alone version of `question`; "" when it gives nothing usable."""
        user = (f"Previous question: {last.question}\nPrevious answer: {last.answer[:400]}\n\n"
                f"Last question: {question}\nRewritten question:")
        text = self._engine.generate_text(REWRITE_SYSTEM, user, max_new_tokens=48).strip().splitlines()
        rewritten = text[0].strip().strip('"') if text else ""
        return rewritten if 0 < len(rewritten) <= 4 * len(question) + 200 else ""
