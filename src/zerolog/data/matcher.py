"""Drain, one message at a time, as a state that worker processes can match against without changing it.

Why: logparser3's ``Drain.LogParser.parse`` reads the whole file into pandas, walks it with ``iterrows`` and
keeps every line id of every cluster in Python lists, so it is slow (7–10k lines/s here) and grows with the file.
The algorithm itself is cheap. ``DrainMiner`` drives logparser3's own Drain methods (``treeSearch``,
``fastMatch``, ``addSeqToPrefixTree``, ``getTemplate``) one message at a time and keeps only the parse tree and
the templates: fed the same messages in the same order it gives exactly logparser3 Drain's clusters and
templates (He et al., "Drain: An Online Log Parsing Approach with Fixed Depth Tree", ICWS 2017).

The matcher is Drain's own fixed-depth prefix tree: a message is routed by its token count and first tokens to a
leaf, then compared with the leaf's clusters (``fastMatch``). Three facts make it fast and parallel while exact:

1. **Shadowed duplicates.** ``fastMatch`` keeps the *first* cluster with the highest similarity (ties need a
   strictly larger similarity or parameter count to win), so a cluster whose template equals an earlier one's in
   the same leaf can never be chosen. Drain keeps creating such clusters when masking leaves too few constant
   tokens for the similarity threshold (HDFS ``BLOCK* ask <*> to delete <*> <*> ...`` makes a new cluster every
   time, logparser3's slowdown on long files, logpai/logparser issue 33). ``fastMatch`` is called here on the
   leaf's *representatives* (first cluster of each distinct template): same answer, in time independent of the
   duplicates, and a duplicate does not change any later answer.
2. **Local changes.** Without new tree nodes, a change (a new distinct template, a template gaining a ``<*>``)
   changes answers only for messages routed to that leaf. Each leaf has a version; new tree nodes (which can
   re-route messages) bump the epoch of their token count (``length_epochs``): the root routes by token count
   first, so they re-route no message of another length. Why per length: with one global epoch every new leaf
   sent every line of the chunks in flight through the client (measured on the bench's diverse nova input: 123k of
   the 200k lines after the 100k-line sample were matched again in the client).
3. **Copies.** ``match`` answers, changing nothing, whether Drain would put a message in an existing cluster
   *leaving its template as it is*, and reports the leaf and its version. Such an answer computed on a copy
   (``matching_copy``, another process) holds in the live miner as long as the epoch of the message's length and
   that leaf's version are unchanged. Every other message must go through ``add``/``assign`` on the live miner, in
   file order.
   Cluster indices only grow, so an index from a copy names the same cluster in the live miner.
"""

from __future__ import annotations

import pickle
import re
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import regex
from logparser.Drain import Logcluster, Node
from logparser.Drain import LogParser as DrainLogParser

from zerolog.config import DrainConfig

#: Drain's wildcard token.
WILDCARD = "<*>"

#: Entries kept in the live miner's message -> cluster cache before it is emptied (bounds its memory).
CACHE_ENTRIES = 1 << 18

#: ``match`` result for a message that reached no leaf.
NO_LEAF = -1

#: Printable ASCII and tab (RE2 syntax): text on which Python's and RE2's regexes agree (``\s``, ``\d``, ``\w``,
#: ``.``, ``$``, strip), for the patterns ``re2_equivalent`` accepts.
SAFE_TEXT = r"^[\t\x20-\x7e]*$"


def re2_equivalent(pattern: str) -> bool:
    """Whether ``pattern`` replaces the same text under RE2 (pyarrow) as under Python's ``regex.sub``, on
    ``SAFE_TEXT``: it must compile in RE2 (no look-around, back-references, possessive or verbose syntax), never
    match the empty string (the engines step past empty matches differently), and use no syntax the two read
    differently (POSIX classes ``[[:alpha:]]``, ``{,n}``)."""
    if "[:" in pattern or "{," in pattern:
        return False
    try:
        if re._parser.parse(pattern).getwidth()[0] == 0:  # type: ignore[attr-defined]
            return False
        regex.compile(pattern)
        pc.replace_substring_regex(pa.array(["probe 1.2.3.4"]), pattern, WILDCARD)
    except Exception:  # noqa: BLE001 (any refusal by either engine: use Python only)
        return False
    return True


class DrainMiner:
    """The state of one Drain run: parse tree, clusters (templates as token lists), epoch and leaf versions.

    A leaf is named by the index of its first cluster (its *serial*). ``leaf_version[serial]`` grows when the
    leaf's representatives change; ``length_epochs[n]`` grows when the tree gains nodes for messages of ``n``
    tokens (``epoch`` counts them all). ``changes`` counts every change
    that matters to a copy (new distinct template, generalised template, new leaf).
    """

    def __init__(self, settings: DrainConfig, masking: list[str]) -> None:
        """``settings``: a system's Drain settings (params ``systems.<name>.drain``); ``masking``: the system's
        regexes, replaced by ``<*>`` in order."""
        self.parser = DrainLogParser(
            log_format="<Content>",
            rex=list(masking),
            keep_para=False,
            depth=settings.depth,
            st=settings.similarity_threshold,
            maxChild=settings.max_children,
        )
        self.masking = list(masking)
        # logparser3 calls regex.sub(pattern, "<*>", line) per pattern in order; compiled once here, same engine.
        self._patterns = [regex.compile(pattern) for pattern in self.masking]
        self.vector_masking = all(re2_equivalent(pattern) for pattern in self.masking)
        self.root = Node()
        self.clusters: list[Logcluster] = []
        self.epoch = 0
        self.length_epochs: dict[int, int] = {}  # token count -> tree changes under its node
        self.leaf_version: list[int] = []  # indexed by leaf serial (a cluster index); other entries unused
        self.changes = 0
        self.assigned = 0  # messages answered by ``assign`` (cache or Drain step): the parse's count of serial matching
        self.is_copy = False
        self._representatives: dict[int, list[Logcluster]] = {}  # leaf serial -> first cluster of each template
        self._representative_texts: dict[int, set[tuple[str, ...]]] = {}
        self._last_leaf: list[Logcluster] | None = None
        # key -> (cluster, leaf, leaf version, token count, epoch of that count)
        self._cache: dict[str, tuple[int, int, int, int, int]] = {}
        # treeSearch calls self.fastMatch(leaf, tokens): record the leaf and match on its representatives.
        self.parser.fastMatch = self._fast_match

    # ------------------------------------------------------------------ copies for worker processes

    def matching_copy(self) -> bytes:
        """A pickled copy that can ``match`` (not ``add``): the tree with each leaf cut to its representatives."""
        clusters: list[Logcluster] = []

        def cut(node: Node) -> Node:
            if isinstance(node.childD, list):
                serial = node.childD[0].index
                kept = list(self._leaf_representatives(serial, node.childD))
                clusters.extend(kept)
                return Node(childD=kept, depth=node.depth, digitOrtoken=node.digitOrtoken)
            return Node(
                childD={token: cut(child) for token, child in node.childD.items()},
                depth=node.depth,
                digitOrtoken=node.digitOrtoken,
            )

        copy = DrainMiner.__new__(DrainMiner)
        state = self.__dict__.copy()
        state.update(
            root=cut(self.root),
            clusters=clusters,
            is_copy=True,
            _cache={},
            _last_leaf=None,
            _representatives={},
            _representative_texts={},
            leaf_version=list(self.leaf_version),
        )
        copy.__dict__.update(state)
        return pickle.dumps(copy, pickle.HIGHEST_PROTOCOL)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = {}
        state["_last_leaf"] = None
        del state["parser"]  # holds a bound method of self; rebuilt below
        state["_parser_settings"] = (self.parser.depth + 2, self.parser.st, self.parser.maxChild)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        depth, st, max_child = state.pop("_parser_settings")
        self.__dict__.update(state)
        self.parser = DrainLogParser(
            log_format="<Content>", rex=list(self.masking), keep_para=False, depth=depth, st=st, maxChild=max_child
        )
        self.parser.fastMatch = self._fast_match

    # ------------------------------------------------------------------ messages

    def mask(self, content: str) -> str:
        """logparser3's ``preprocess`` then ``strip``: each masking regex replaced by ``<*>``, in order."""
        for pattern in self._patterns:
            content = pattern.sub(WILDCARD, content)
        return content.strip()

    def mask_array(self, contents: list[str]) -> pa.Array:
        """``mask`` of every message, as an Arrow string array: vectorised (RE2) on text where the engines agree
        (``SAFE_TEXT``, all patterns ``re2_equivalent``), Python's ``regex`` elsewhere."""
        array = pa.array(contents, type=pa.string())
        if not self.vector_masking or not contents:
            return pa.array([self.mask(content) for content in contents], type=pa.string())
        safe = pc.match_substring_regex(array, SAFE_TEXT).to_numpy(zero_copy_only=False)
        masked = array
        for pattern in self.masking:
            masked = pc.replace_substring_regex(masked, pattern, WILDCARD)
        masked = pc.utf8_trim_whitespace(masked)
        if safe.all():
            return masked
        values = masked.to_pylist()
        for position in np.flatnonzero(~safe).tolist():
            values[position] = self.mask(contents[position])
        return pa.array(values, type=pa.string())

    def _fast_match(self, leaf: Any, tokens: list[str]) -> Logcluster | None:
        self._last_leaf = leaf
        if isinstance(leaf, list) and leaf:
            leaf = self._leaf_representatives(leaf[0].index, leaf)
        return DrainLogParser.fastMatch(self.parser, leaf, tokens)

    def _leaf_representatives(self, serial: int, leaf: list[Logcluster]) -> list[Logcluster]:
        representatives = self._representatives.get(serial)
        if representatives is None:
            representatives, texts = [], set()
            for cluster in leaf:
                text = tuple(cluster.logTemplate)
                if text not in texts:
                    texts.add(text)
                    representatives.append(cluster)
            self._representatives[serial] = representatives
            self._representative_texts[serial] = texts
        return representatives

    def match(self, tokens: list[str]) -> tuple[int, int, int]:
        """``(cluster, leaf, leaf version)``: the cluster Drain would put ``tokens`` in without changing its
        template (-1 if it would create or generalise one: only the live miner may), the leaf it was routed to
        (``NO_LEAF`` if none) and that leaf's version. Changes nothing."""
        self._last_leaf = None
        cluster = self.parser.treeSearch(self.root, tokens)
        leaf = self._last_leaf
        serial = leaf[0].index if isinstance(leaf, list) and leaf else NO_LEAF
        version = self.leaf_version[serial] if serial != NO_LEAF else -1
        if cluster is None:
            return -1, serial, version
        # getTemplate keeps a template token iff it equals the message's; a "<*>" stays "<*>".
        for template_token, token in zip(cluster.logTemplate, tokens, strict=True):  # the tree is keyed by length
            if template_token != token and template_token != WILDCARD:
                return -1, serial, version
        return cluster.index, serial, version

    def add(self, tokens: list[str]) -> int:
        """One step of logparser3's ``Drain.parse`` loop for one message; returns its cluster's index."""
        if self.is_copy:
            raise RuntimeError("DrainMiner.add: a matching copy cannot change (use the live miner)")
        self._last_leaf = None
        cluster = self.parser.treeSearch(self.root, tokens)
        searched_leaf = self._last_leaf
        if cluster is None:
            cluster = Logcluster(logTemplate=tokens, logIDL=[])  # line ids are not kept: bounded memory
            cluster.index = len(self.clusters)
            self.clusters.append(cluster)
            self.leaf_version.append(0)
            self.parser.addSeqToPrefixTree(self.root, cluster)
            if isinstance(searched_leaf, list) and searched_leaf and searched_leaf[-1] is cluster:
                # Inserted along the searched path into an existing leaf: no new tree nodes.
                serial = searched_leaf[0].index
                cluster.leaf = serial
                text = tuple(tokens)
                texts = self._representative_texts.get(serial)
                if texts is None:
                    self._leaf_representatives(serial, searched_leaf)
                elif text not in texts:
                    texts.add(text)
                    self._representatives[serial].append(cluster)
                else:
                    return cluster.index  # a shadowed duplicate: no answer changes
                self.leaf_version[serial] += 1
            else:
                # New tree nodes (a fresh leaf holding only this cluster): routing may change anywhere.
                cluster.leaf = cluster.index
                self.epoch += 1
                self.length_epochs[len(tokens)] = self.length_epochs.get(len(tokens), 0) + 1
            self.changes += 1
        else:
            template = self.parser.getTemplate(tokens, cluster.logTemplate)
            if " ".join(template) != " ".join(cluster.logTemplate):
                cluster.logTemplate = template
                serial = cluster.leaf
                self._representatives.pop(serial, None)  # rebuilt from the leaf on next use
                self._representative_texts.pop(serial, None)
                self.leaf_version[serial] += 1
                self.changes += 1
        return cluster.index

    def assign(self, key: str) -> int:
        """``add`` for a masked message, answered from a cache while its leaf and the tree are unchanged."""
        self.assigned += 1
        hit = self._cache.get(key)
        if hit is not None and self.leaf_version[hit[1]] == hit[2] and self.length_epochs.get(hit[3], 0) == hit[4]:
            return hit[0]
        tokens = key.split()
        index, serial, version = self.match(tokens)
        if index >= 0:
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.clear()
            self._cache[key] = (index, serial, version, len(tokens), self.length_epochs.get(len(tokens), 0))
            return index
        return self.add(tokens)

    # ------------------------------------------------------------------ persisted state (zerolog detect)

    @property
    def placeable_tokens(self) -> int:
        """The fewest tokens a message needs to reach a leaf: Drain places a message in the tree only when it has at
        least ``depth - 2`` tokens (logparser3's ``self.depth``); a shorter one makes a new cluster of its own text
        every time, unreachable by any search, so its template is always its own text."""
        return int(self.parser.depth)

    def state(self) -> dict[str, Any]:
        """The tree as JSON-safe data: settings, masking regexes, and every node with each leaf cut to its distinct
        templates (token lists), in the leaf's order. Enough to ``match`` exactly as this miner does (a leaf's
        shadowed duplicates never win a match); no pickle, so a stored state cannot run code when read."""

        def node_state(node: Node) -> Any:
            if isinstance(node.childD, list):
                leaf = self._leaf_representatives(node.childD[0].index, node.childD) if node.childD else []
                return {"templates": [list(cluster.logTemplate) for cluster in leaf]}
            return {"children": [[token, node_state(child)] for token, child in node.childD.items()]}

        return {
            "format_version": 1,
            "depth": self.parser.depth + 2,
            "similarity_threshold": self.parser.st,
            "max_children": self.parser.maxChild,
            "masking": list(self.masking),
            "tree": node_state(self.root),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DrainMiner:
        """A matching copy (``match`` only, like ``matching_copy``) rebuilt from ``state()``; clusters are numbered
        leaf by leaf in tree order."""
        settings = DrainConfig(depth=int(state["depth"]), similarity_threshold=float(state["similarity_threshold"]),
                               max_children=int(state["max_children"]))  # fmt: skip
        miner = cls(settings, list(state["masking"]))

        def build(entry: dict[str, Any], depth: int, token: Any) -> Node:
            if "templates" in entry:
                leaf = []
                for tokens in entry["templates"]:
                    cluster = Logcluster(logTemplate=list(tokens), logIDL=[])
                    cluster.index = len(miner.clusters)
                    miner.clusters.append(cluster)
                    miner.leaf_version.append(0)
                    leaf.append(cluster)
                for cluster in leaf:
                    cluster.leaf = leaf[0].index if leaf else -1
                return Node(childD=leaf, depth=depth, digitOrtoken=token)
            # the root's keys are token counts (int), every other key a token (str): JSON pairs keep both types
            children = {key: build(child, depth + 1, key) for key, child in entry["children"]}
            return Node(childD=children, depth=depth, digitOrtoken=token)

        miner.root = build(state["tree"], 0, None)
        miner.is_copy = True
        return miner

    # ------------------------------------------------------------------ templates

    def template(self, index: int) -> str:
        """Template text of a cluster now (``<*>`` for parameters), as Drain writes it."""
        return " ".join(self.clusters[index].logTemplate)

    def templates(self) -> list[str]:
        """Every cluster's template text, by cluster index."""
        return [" ".join(cluster.logTemplate) for cluster in self.clusters]
