"""The device's side of a secure round on Flower's Message API.

``client_app.train`` hands every train message that carries a ``"secagg"`` record here; the stage
named in the record picks what happens (``fedpriv.secagg`` describes the protocol):

1. **setup** (the train instruction: the global arrays, the run config, the round's SecAgg+
   parameters and the :class:`UpdatePlan`): check the parameters *before* training (a round that
   could leak is refused without spending any ε), train as a plaintext round would, and keep the
   update, trained minus received, in the server's update space (hetlora: zero-padded to the
   global rank), clipped to the plan's L2 bound (less the margin that keeps it within the bound
   once quantized), with its weight. The reply carries the two public
   keys, the metrics a plaintext reply would send (client/replies.py), the client record and the
   declaration of every field, and never the arrays;
2. **share-keys**, **unmask**: answered by the state machine (``client/secagg.py``);
3. **masked-input**: the kept update is quantized, masked and sent, then deleted.

Between messages everything lives in ``context.state`` (Flower keeps it on the device for the run):
the protocol state and the update, bound to the session it was trained for. A message the state
machine refuses raises :class:`ProtocolError` (Flower turns it into an error reply, which the
server counts as a dropout); nothing is ever sent in plaintext instead.
"""

from __future__ import annotations

from collections.abc import Callable
from logging import WARNING

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.common import log

from client.device import device_seed, read_instruction
from client.replies import arrays_mechanism
from client.secagg import SecAggClient
from fedpriv.adapter_parts import pad_to_shapes
from fedpriv.released import ARRAYS, DECLARATION, field_name
from fedpriv.secagg.errors import ProtocolError
from fedpriv.secagg.messages import MASKED_INPUT, SETUP, SetupRequest
from fedpriv.secagg.update import SECAGG_RECORD, UpdatePlan

STATE_RECORD = "secagg-state"  # context.state: the protocol state (keys, shares held)
INPUT_RECORD = "secagg-input"  # context.state: the clipped update and its weight, until masked
# The device's training for a setup message: the reply content a plaintext round would send.
LocalTraining = Callable[[Message, Context], RecordDict]


def is_secure(msg: Message) -> bool:
    return SECAGG_RECORD in msg.content.config_records


def secure_train(msg: Message, context: Context, local_training: LocalTraining) -> Message:
    """Answer one message of a secure round (any stage)."""
    fields = dict(msg.content.config_records[SECAGG_RECORD])
    stage = fields.get("secagg-stage")
    saved = context.state.config_records.get(STATE_RECORD)
    kept = context.state.config_records.get(INPUT_RECORD)
    # Stochastic rounding is seeded per device and round, so a simulated run is reproducible; the
    # rounding bits are no secret (the server only ever sees them inside the masked sum).
    rng = np.random.default_rng(int(kept["rounding-seed"])) if kept is not None else None
    client = SecAggClient.restore(int(msg.metadata.dst_node_id), dict(saved) if saved is not None else {}, rng)
    if stage == SETUP:
        content = _setup(client, fields, msg, context, local_training)
    elif stage == MASKED_INPUT:
        content = RecordDict({SECAGG_RECORD: ConfigRecord(_masked_input(client, fields, context))})
    else:
        content = RecordDict({SECAGG_RECORD: ConfigRecord(client.handle(fields))})
    context.state[STATE_RECORD] = ConfigRecord(client.export())
    return Message(content=content, reply_to=msg)


def _setup(client: SecAggClient, fields: dict, msg: Message, context: Context, local_training: LocalTraining) -> RecordDict:
    request = SetupRequest.from_fields(fields)
    plan = UpdatePlan.from_fields(fields)
    if plan.layout.size != request.vector_length:
        raise ProtocolError(f"the update layout holds {plan.layout.size} values, the round {request.vector_length}")
    advertise = client.setup(request)  # refuses unsafe parameters before any training
    trained = local_training(msg, context)
    received = _arrays(msg.content["arrays"])
    try:
        update = {key: value.astype(np.float64) - received[key].astype(np.float64) for key, value in _arrays(trained["arrays"]).items()}
        vector = plan.vector(pad_to_shapes(update, dict(zip(plan.layout.keys, plan.layout.shapes, strict=True))),
                             request.quantization)
    except (KeyError, ValueError) as err:
        raise ProtocolError(f"this device's update does not fit the round's update space: {err}") from None
    weight = plan.weight(float(trained["metrics"]["num-examples"]), request.quantization)
    instruction = read_instruction(msg.content["config"])
    seed = device_seed(instruction.config, str(trained["client"]["client-id"]), f"secagg-rounding:{instruction.server_round}")
    context.state[INPUT_RECORD] = ConfigRecord({
        "session": request.header.session, "weight": weight, "rounding-seed": seed,
        "update": np.ascontiguousarray(vector, dtype="<f8").tobytes(),
    })
    keys = advertise.to_fields()
    given = trained.config_records.get(DECLARATION)  # what a plaintext reply would declare (none: undeclared)
    declared = {k: v for k, v in (given or {}).items() if k != ARRAYS}  # the update goes masked, later
    declared.update({field_name(SECAGG_RECORD, k): "protocol" for k in keys})
    # Declared now, sent at the masked-input stage: the update itself, masked.
    declared[field_name(SECAGG_RECORD, MASKED_INPUT)] = arrays_mechanism(instruction.config, secure=True)
    return RecordDict({"metrics": trained["metrics"], "client": trained["client"], SECAGG_RECORD: ConfigRecord(keys),
                       DECLARATION: ConfigRecord(declared)})


def _masked_input(client: SecAggClient, fields: dict, context: Context) -> dict:
    kept = context.state.config_records.get(INPUT_RECORD)
    if kept is None or kept["session"] != client.state.session:
        raise ProtocolError("no update was trained on this device for this secure-aggregation session")
    update = np.frombuffer(kept["update"], dtype="<f8")
    reply = client.handle(fields, lambda: (update, int(kept["weight"])))
    del context.state[INPUT_RECORD]  # masked and sent: the plaintext update is of no further use
    if client.clipped:
        log(WARNING, "secure aggregation: %d coordinates of this device's update were outside ±%g and were clipped "
            "(secure-aggregation-range)", client.clipped, client.state.setup.get("clip-range"))
    return reply


def _arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {key: array.numpy() for key, array in record.items()}
