"""The strategy comparison (`python -m simulations.studies.compare_strategies`), one concern per module:

* `settings`: what defines a comparison (Settings) and how the command line becomes one;
* `goals`: the per-client table and the goal arithmetic (wins, gain, gain kept);
* `workers`: the device-side work, in a pool of one-thread processes;
* `reuse`: taking rows of an earlier comparison, and the machine and model it was made with;
* `orchestration`: running every (profile, ε, strategy) and assembling results.json;
* `plots`, `report`: the PNG plots, the console table and the Markdown report;
* `formatting`: how numbers, ε and tables are written (shared with the seed study).
"""
