"""How often `--route auto` answers on the device, and how those answers compare with the cloud's.

    python -m simulations.studies.gateway_route [--model smollm2-135m] [--min-confidence 0.5]

On a small labelled prompt set (``prompts.jsonl``: short factual questions, questions that need a
bigger model, and questions about personal details given in the prompt, each with the keywords a
right answer contains), the local model answers every prompt and the router decides, as
`Gateway.ask` does for ``auto``, whether that answer is kept; every prompt also goes through the
gateway's ``cloud`` route (sanitize, log, send, restore) to `fedpriv gateway serve`, started and
stopped by the study, as the offline stand-in for the cloud. Reported: the share ``auto`` keeps on
the device, the agreement of those answers with the stand-in's, the correctness of each against
the labels, and the same figures for other thresholds (from the same answers).

Study code: the product never imports it.
"""
