"""Where the callback sits in the Trainer's callback list.

The metrics the callback adds to ``logs`` in ``on_log`` reach only the callbacks that run after
it, and the Trainer puts the reporting integrations (TensorBoard, W&B, ...) before user
callbacks. Nothing transformers supports lets a callback reach the list: ``CallbackHandler``
calls each event with the arguments, the state, the control and the model, optimizer, scheduler
and dataloaders, never with itself or the Trainer, and ``Trainer.add_callback`` /
``pop_callback`` need the Trainer. So the handler is found the one way there is: it is the
``self`` of the frame that calls ``on_init_end`` / ``on_train_begin`` (``call_event``, a few
frames up). Where it cannot be found the metrics still reach ``state.log_history``.
"""

from __future__ import annotations

import sys
from typing import Any

from transformers.trainer_callback import DefaultFlowCallback

__all__ = ["place_before_reporters"]

_MAX_FRAMES = 6  # call_event -> on_<event> -> this: the handler is 2-3 frames up today


def place_before_reporters(callback: Any) -> bool:
    """Move ``callback`` right after ``DefaultFlowCallback`` in the list of the CallbackHandler
    that is calling it; False if no such handler is on the stack."""
    handler = None
    frame = sys._getframe(1)
    for _ in range(_MAX_FRAMES):
        if frame is None:
            break
        owner = frame.f_locals.get("self")
        callbacks = getattr(owner, "callbacks", None)
        if isinstance(callbacks, list) and any(cb is callback for cb in callbacks):
            handler = owner
            break
        frame = frame.f_back
    if handler is None:
        return False
    callbacks = handler.callbacks
    me = next(i for i, cb in enumerate(callbacks) if cb is callback)
    target = 0
    for i, cb in enumerate(callbacks):
        if isinstance(cb, DefaultFlowCallback):
            target = i + 1
    if me > target:
        callbacks.insert(target, callbacks.pop(me))
    return True
