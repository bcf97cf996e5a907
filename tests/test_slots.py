"""The processing slots: a fixed number per instance, and no owner may take them all."""

from __future__ import annotations

import pytest

from function.slots import Slots


def test_one_owner_leaves_a_slot_for_the_others() -> None:
    slots = Slots(2, owners=2)
    assert slots.try_take("alice")
    assert not slots.try_take("alice")  # her share is one of two
    assert slots.try_take("bob")
    assert not slots.try_take("carol")  # every slot is busy
    slots.give_back("alice")
    assert slots.try_take("carol")


def test_shares_grow_with_the_instance() -> None:
    slots = Slots(4, owners=3)
    assert [slots.try_take("alice") for _ in range(4)] == [True, True, True, False]
    assert slots.try_take("bob") and not slots.try_take("bob")  # all four taken


def test_a_single_owner_uses_every_slot() -> None:
    """Without auth (or with one key) there is nobody to keep a slot for."""
    slots = Slots(2, owners=1)
    assert slots.try_take("anonymous") and slots.try_take("anonymous") and not slots.try_take("anonymous")


def test_giving_back_what_was_never_taken_is_a_bug() -> None:
    slots = Slots(2, owners=2)
    with pytest.raises(RuntimeError):
        slots.give_back("alice")
