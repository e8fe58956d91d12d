"""grpo_sim.signals: the stop request of one StopSignals is its own (the sweep's used to live on its class)."""

from __future__ import annotations

import os
import signal

import pytest

from grpo_sim.runner import GracefulStopCallback
from grpo_sim.signals import StopSignals


def test_a_signal_is_recorded_on_the_installed_instance_only():
    told = []
    outer, other = StopSignals(on_signal=told.append), StopSignals()
    with outer:
        os.kill(os.getpid(), signal.SIGTERM)
        assert outer.signum == signal.SIGTERM and told == [signal.SIGTERM]
        with pytest.raises(KeyboardInterrupt):  # a second one aborts at once
            os.kill(os.getpid(), signal.SIGINT)
    assert other.signum is None
    assert signal.getsignal(signal.SIGTERM) is not outer._handle  # handlers restored


def test_training_stop_aborts_only_on_a_second_sigint(monkeypatch):
    monkeypatch.setattr(GracefulStopCallback, "_announce", staticmethod(lambda signum: None))
    stopper = GracefulStopCallback()
    stopper.install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # a scheduler repeating itself: still a graceful stop
        assert stopper.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        stopper.uninstall()
    assert stopper.signum == signal.SIGTERM  # read after training, so uninstall keeps it
