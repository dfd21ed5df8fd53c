"""A fleet for `test_simulate`: fedpriv's own ClientApp, except that the phone of partition 0
dies (its ClientApp raises) in the middle of round 1's training.

Run as `python -m tests.simulations.dying_phone OUT_DIR`: a one-round phone-profile simulation of
five phones (all five sampled, four valid replies needed, secure aggregation: the phone default) on
Flower's Ray engine."""

from __future__ import annotations

import sys
from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from client import client_app as fedpriv_client

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    if int(context.node_config["partition-id"]) == 0 and int(msg.content["config"]["server-round"]) == 1:
        raise RuntimeError("this phone died mid-round")
    return fedpriv_client.train(msg, context)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    return fedpriv_client.evaluate_global(msg, context)


def main(out: str) -> None:
    from fedpriv.config import RunConfig
    from simulations.simulate import run_simulation

    config = RunConfig(profile="phone", num_clients=5, rounds=1, records_per_client=30, max_seq_len=32, dp="none", out=out)
    run_simulation(config, show_progress=False, client_app=app)


if __name__ == "__main__":
    main(str(Path(sys.argv[1])))
