"""ID&V's rules, one path at a time: first the state machine alone (an injected clock and customer facts; no call,
no event loop), then the async session that runs its effects, over an in-memory directory and store.

The end-to-end versions of these paths, over WebRTC with real voices, are in ``test_idv.py``.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import aiohttp
import pytest

from calls.texts import Catalogue
from identity.directory import DirectoryError
from identity.idv import (
    Audit,
    CheckPin,
    ClaimVoice,
    CollectEnrolment,
    IdvContext,
    IdvFlow,
    IdvSettings,
    LiveIdv,
    LookupCustomer,
    LookupPhone,
    OptOut,
    Publish,
    RecordConsent,
    SendCode,
    Status,
    Step,
    ToAgent,
    ToCustomer,
    VoicePrint,
)
from identity.voiceid import Decision, Progress
from identity.voiceid import Verdict as VoiceVerdict
from signaling.middleware import WEB_DIR
from store.base import Customer
from store.errors import Conflict, Invalid
from store.security import SecretChecks, hash_password
from store.sqlite import SqliteStore

ALICE = Customer("C-100", "Alice Example", ("+44 7700 900100",))  # PIN 4321, an enrolled voice
BOB = Customer("C-200", "Bob Example", ("+44 7700 900200", "+44 20 7946 0200"))  # PIN 2468, no voice print
DAN = Customer("C-300", "Dan Example", ("+351 912 345 678",))  # no PIN
SHARED_LINE = "+44 20 7946 0500"
SHARED = [Customer("C-500", None, (SHARED_LINE,)), Customer("C-501", None, (SHARED_LINE,))]
CATALOGUE = Catalogue(WEB_DIR / "i18n")
TEXTS = partial(CATALOGUE.render, "en")
WORDING = TEXTS("voice.consent", company="Acme")


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Facts:
    """What the directory's customers hold, as the machine asks it."""

    pins: set[str] = field(default_factory=lambda: {"C-100", "C-200"})
    prints: dict[str, VoicePrint] = field(default_factory=lambda: {"C-100": VoicePrint.ENROLLED})
    enrolments: dict[str, dict] = field(default_factory=dict)

    def has_pin(self, customer_id: str) -> bool:
        return customer_id in self.pins

    def voice_print(self, customer_id: str) -> VoicePrint:
        return self.prints.get(customer_id, VoicePrint.NONE)

    def enrolment(self, customer_id: str) -> dict | None:
        return self.enrolments.get(customer_id)


def Verdict(decision: str, *rest: float) -> VoiceVerdict:  # noqa: N802 - reads like the record it makes
    """Voice ID's own verdict, written with the decision's name."""
    return VoiceVerdict(Decision(decision), *rest)


def new_flow(
    phone: str | None = None,
    facts: Facts | None = None,
    clock: Clock | None = None,
    voice: bool = True,
    page: bool = True,
    **settings,
) -> IdvFlow:
    return IdvFlow(
        IdvSettings(**settings),
        "L-1",
        phone,
        facts or Facts(),
        clock=clock or Clock(),
        company="Acme",
        voice=voice,
        page=page,
        new_code=lambda: "123456",
        texts=TEXTS,
    )


def identified(customer: Customer, **kwargs) -> tuple[IdvFlow, list]:
    """A flow whose calling number found ``customer``, and the effects of finding them."""
    flow = new_flow(phone=customer.phones[0], **kwargs)
    assert flow.begin() == [LookupPhone(customer.phones[0])]
    return flow, flow.phone_found([customer])


def verified_by_pin(customer: Customer = BOB, **kwargs) -> IdvFlow:
    flow, _ = identified(customer, **kwargs)
    if flow.record.step == Step.VOICE:
        flow.ask_code()
    pin = {"C-100": "4321", "C-200": "2468"}[customer.id]
    assert flow.verify_code(pin) == [CheckPin(customer.id, pin)]
    flow.pin_checked(True)
    assert flow.record.verified_by == "pin"
    return flow


def notes(flow: IdvFlow) -> list[str]:
    return [h["what"] for h in flow.record.history]


# -- identification --------------------------------------------------------------------------------------------------


def test_the_calling_number_identifies_and_the_voice_verifies():
    flow, effects = identified(ALICE)
    assert effects == [Audit("idv.identified", "C-100: by phone"), ClaimVoice("C-100"), Publish()]
    r = flow.record
    assert (r.step, r.customer_id, r.customer_name, r.identified_by) == (Step.VOICE, "C-100", "Alice Example", "phone")
    assert r.status == Status.IDENTIFIED and r.reason == "verifying the voice as the customer speaks"
    # The page asks nothing of an enrolled caller.
    message = "Thank you. Please carry on talking to your agent."
    assert flow.customer_view() == {"type": "idv", "step": "done", "message": message}

    assert flow.on_verdict("C-100", Verdict("inconclusive", 0.0)) == [Publish()]
    assert flow.on_verdict("C-100", Verdict("authenticated", 3.24, 0.8, 0.64)) == [
        Audit("idv.verified", "C-100: by voice"),
        Publish(),
    ]
    assert (r.verified_by, r.step, r.reason) == ("voice", Step.DONE, "verified by voice on 3.2 s of speech")
    view = flow.agent_view()
    assert view["link_id"] == "L-1" and view["status"] == "identified_and_verified"
    assert view["status_label"] == "Identified and verified" and view["voice"]["score"] == 0.8
    assert flow.wakes_at is None
    assert notes(flow) == ["identified as C-100 by the calling number", "verified by voice on 3.2 s of speech"]
    assert all(h["at"] == 1000.0 for h in r.history)  # the injected clock


def test_verified_on_the_menu_that_handed_them_here_they_are_not_asked_again():
    menu = verified_by_pin(BOB).record.to_dict()
    flow = new_flow(phone="+44 7700 900999")  # another number: the menu's check, not the number, says who it is
    assert flow.begin(menu) == [LookupCustomer("C-200")]
    assert flow.customer_found(BOB) == [
        Audit("idv.identified", "C-200: by phone, before this call"),
        Audit("idv.verified", "C-200: by pin"),
        Publish(),
    ]
    r = flow.record
    assert (r.status, r.step, r.verified_by, r.reason) == (
        Status.VERIFIED,
        Step.DONE,
        "pin",
        "verified by PIN before this call",
    )
    assert flow.customer_view() == {"type": "idv", "step": "done", "message": ""}  # the page asks nothing

    # An enrolled voice still listens: a voice that does not match undoes it.
    alice = new_flow()
    alice.begin({**menu, "customer_id": "C-100"})
    assert alice.customer_found(ALICE)[-2:] == [ClaimVoice("C-100"), Publish()]
    alice.on_verdict("C-100", Verdict("not_authenticated", 3.0, 0.40, 0.64))
    assert alice.record.status == Status.IDENTIFIED and "was verified by PIN" in alice.record.reason

    # Only identified there, or no longer in the directory: the call checks as it always does.
    flow = new_flow(phone=BOB.phones[0])
    assert flow.begin({**menu, "verified_by": None}) == [LookupPhone(BOB.phones[0])]
    flow = new_flow(phone=BOB.phones[0])
    flow.begin(menu)
    assert flow.customer_found(None) == [LookupPhone(BOB.phones[0])]
    assert flow.record.status == Status.NOT_IDENTIFIED and flow.record.identify_attempts == 0


def test_a_phone_caller_is_identified_by_number_and_verified_by_voice_with_nothing_to_type():
    flow, effects = identified(ALICE, page=False)
    assert effects == [Audit("idv.identified", "C-100: by phone"), ClaimVoice("C-100"), Publish()]
    flow.on_verdict("C-100", Verdict("authenticated", 3.24, 0.8, 0.64))
    assert flow.record.verified_by == "voice"


def test_a_phone_caller_is_never_left_waiting_on_a_page_they_do_not_have():
    unknown = new_flow(phone="+1 555 0100", page=False)
    unknown.begin()
    assert unknown.phone_found([]) == [
        Audit(
            "idv.not_identified",
            "None: no customer has the calling number; a phone caller has no page to type a customer number",
        ),
        Publish(),
    ]
    assert unknown.record.step == Step.DONE and unknown.record.status == Status.NOT_IDENTIFIED
    with pytest.raises(Conflict):
        unknown.identify("C-200")

    flow, _ = identified(BOB, page=False)  # not enrolled, has a PIN: nowhere to type it
    r = flow.record
    assert (r.step, r.status, r.code_kind) == (Step.DONE, Status.IDENTIFIED, None)
    assert r.reason == "not enrolled for voice ID, and a phone caller has no page to type a PIN or code"
    voiced, _ = identified(ALICE, page=False)
    voiced.on_verdict("C-100", Verdict("authenticated", 3.24, 0.8, 0.64))
    with pytest.raises(Conflict, match="no page to give consent"):
        voiced.ask_consent()


def test_an_unknown_number_then_the_customer_number_on_the_first_try_then_the_pin():
    flow = new_flow(phone="+1 555 0100")
    flow.begin()
    assert flow.phone_found([]) == [Publish()]
    r = flow.record
    assert r.step == Step.IDENTIFY
    assert r.reason == "no customer has the calling number: waiting for the customer's number"
    assert flow.customer_view() == {
        "type": "idv",
        "step": "identify",
        "message": "Please enter your customer number so we can find your details.",
        "attempts_left": 3,
    }
    assert flow.identify(" C-200 ") == [LookupCustomer("C-200")]
    assert flow.customer_found(BOB) == [Audit("idv.identified", "C-200: by identifier"), Publish()]
    assert (r.step, r.code_kind, r.identified_by) == (Step.CODE, "pin", "identifier")
    assert r.reason == "not enrolled for voice ID: waiting for the customer's PIN"
    assert flow.customer_view() == {
        "type": "idv",
        "step": "code",
        "message": "To confirm it is you, please enter your PIN.",
        "code_kind": "pin",
        "attempts_left": 3,
    }
    effects = flow.verify_code(" 2468 ")
    assert effects == [CheckPin("C-200", "2468")] and "2468" not in repr(effects)  # the PIN stays out of logs
    assert flow.pin_checked(True) == [Audit("idv.verified", "C-200: by pin"), Publish()]
    assert (r.status, r.verified_by, r.reason, r.identify_attempts) == (Status.VERIFIED, "pin", "verified by PIN", 0)
    assert flow.customer_view() == {"type": "idv", "step": "done", "message": "Thank you, that is right."}


def test_the_customer_number_on_the_third_try_then_a_wrong_pin_three_times():
    flow = new_flow()  # no calling number at all
    assert flow.begin() == [Publish()]
    r = flow.record
    assert r.reason == "no calling number to look up: waiting for the customer's number"
    for wrong, left in (("C-999", 2), ("C-2000", 1)):
        flow.identify(wrong)
        assert flow.customer_found(None) == [Publish()]
        page = flow.customer_view()
        assert page["step"] == "identify" and page["attempts_left"] == left and f"{left} attempt" in page["message"]
    assert r.reason == "waiting for the customer's number (1 attempt left)"
    assert flow.identify(" c-200 ") == [LookupCustomer("c-200")]  # as people type it; the directory matches it
    flow.customer_found(BOB)
    with pytest.raises(Invalid, match="digits"):
        flow.verify_code("12ab")  # refused, not counted
    for left in (2, 1):
        flow.verify_code("1111")
        assert flow.pin_checked(False) == [Publish()]
        assert flow.customer_view()["attempts_left"] == left
    assert r.reason == "waiting for the PIN (1 attempt left)"
    assert flow.customer_view()["message"] == "That is not right. 1 attempt left."
    flow.verify_code("1111")
    assert flow.pin_checked(False) == [Audit("idv.code_failed", "C-200: the PIN was wrong 3 times"), Publish()]
    assert (r.step, r.status, r.code_attempts, r.reason) == (
        Step.DONE,
        Status.IDENTIFIED,
        3,
        "the PIN was wrong 3 times",
    )
    assert flow.customer_view() == {
        "type": "idv",
        "step": "done",
        "message": "That was not right. Your agent will help you.",
    }
    with pytest.raises(Conflict, match="no PIN or code is asked for now"):
        flow.verify_code("2468")  # no fourth try
    with pytest.raises(Conflict, match="wrong 3 times already"):
        flow.ask_code()
    assert notes(flow)[-1] == "PIN wrong (attempt 3 of 3)"


def test_three_unknown_numbers_on_a_shared_line_leave_the_caller_not_identified():
    flow = new_flow(phone=SHARED_LINE)
    flow.begin()
    flow.phone_found(SHARED)
    assert flow.record.reason == "2 customers share the calling number: waiting for the customer's number"
    for attempt in range(3):
        flow.identify(f"nobody-{attempt}")
        effects = flow.customer_found(None)
    assert effects == [Audit("idv.not_identified", "None: 3 customer numbers were not found"), Publish()]
    r = flow.record
    assert (r.status, r.step, r.identify_attempts) == (Status.NOT_IDENTIFIED, Step.DONE, 3)
    assert r.reason == "3 customer numbers were not found"
    assert flow.customer_view()["message"] == "We could not find your details. Your agent will help you."
    with pytest.raises(Conflict, match="not open"):
        flow.identify("C-200")


def test_going_on_without_identifying_or_without_verifying():
    anonymous = new_flow()
    anonymous.begin()
    assert anonymous.skip() == [Publish()]
    assert anonymous.record.status == Status.NOT_IDENTIFIED
    assert anonymous.record.reason == "the customer chose to go on without identifying"
    assert anonymous.customer_view() == {"type": "idv", "step": "done", "message": "Your agent will help you."}
    with pytest.raises(Conflict, match="nothing to skip"):
        anonymous.skip()

    unverified, _ = identified(BOB)
    assert unverified.record.step == Step.CODE
    assert unverified.skip() == [Publish()]
    r = unverified.record
    assert (r.status, r.customer_id) == (Status.IDENTIFIED, "C-200")
    assert r.reason == "the customer chose to go on without verifying"


def test_a_directory_that_is_down_is_not_counted_against_the_caller():
    flow = new_flow(phone=DAN.phones[0])
    flow.begin()
    assert flow.phone_lookup_failed("the customer directory answered HTTP 503") == [Publish()]
    r = flow.record
    assert r.reason == (
        "calling-number lookup failed: the customer directory answered HTTP 503: waiting for the customer's number"
    )
    flow.identify("C-300")
    assert flow.customer_lookup_failed("the customer directory answered HTTP 503") == [Publish()]
    assert r.reason == "the customer directory is unavailable (the customer directory answered HTTP 503)"
    assert r.identify_attempts == 0 and r.status == Status.NOT_IDENTIFIED
    page = flow.customer_view()
    assert page["message"] == "We cannot check customer numbers right now. Your agent will help you."
    assert page["attempts_left"] == 3
    assert flow.close() == [Publish()]
    assert r.reason == "the call ended while waiting for the customer's number"


def test_without_the_calling_number_lookup_the_page_asks_at_once():
    flow = new_flow(phone=ALICE.phones[0], ani=False)
    assert flow.begin() == [Publish()]
    assert flow.record.reason == "waiting for the customer's number" and flow.record.history == []


@pytest.mark.parametrize(
    ("customer", "facts", "voice", "why"),
    [
        (BOB, Facts(), True, "not enrolled for voice ID"),
        (ALICE, Facts(prints={"C-100": VoicePrint.OPTED_OUT}), True, "opted out of voice ID"),
        (ALICE, Facts(), False, "voice ID is off on this server"),
    ],
)
def test_a_caller_voice_id_cannot_verify_is_asked_for_their_pin(customer, facts, voice, why):
    flow, effects = identified(customer, facts=facts, voice=voice)
    assert effects == [Audit("idv.identified", f"{customer.id}: by phone"), Publish()]  # no voice claimed
    assert (flow.record.step, flow.record.code_kind) == (Step.CODE, "pin")
    assert flow.record.reason == f"{why}: waiting for the customer's PIN"
    assert notes(flow)[-1] == f"{why}: asked for the PIN"


def test_no_pin_and_no_code_sender_leave_the_caller_identified_only_with_the_reason():
    flow, effects = identified(DAN)
    assert effects == [Audit("idv.identified", "C-300: by phone"), Publish()]
    r = flow.record
    assert (r.status, r.step) == (Status.IDENTIFIED, Step.DONE)
    assert r.reason == "not enrolled for voice ID, and the customer has no PIN or phone for a code"
    assert flow.customer_view() == {"type": "idv", "step": "done", "message": "Thank you. Your agent will help you."}


# -- one-time codes --------------------------------------------------------------------------------------------------


def test_a_one_time_code_is_sent_then_verified():
    flow, effects = identified(DAN, otp_webhook="https://sms.example/send")
    assert effects == [Audit("idv.identified", "C-300: by phone"), SendCode("C-300", DAN.phones[0], "123456", 300)]
    assert "123456" not in repr(effects)  # the code stays out of logs
    assert flow.code_sent(None) == [Publish()]
    r = flow.record
    assert (r.step, r.code_kind) == (Step.CODE, "otp")
    assert r.reason == "not enrolled for voice ID: waiting for the customer's one-time code"
    page = flow.customer_view()
    assert page["message"] == "We have sent a code to your phone ending 78. Please enter it."
    assert "123456" not in json.dumps([flow.agent_view(), page])
    assert flow.verify_code("000000") == [Publish()]  # an OTP is checked at once: no effect to wait on
    assert flow.customer_view()["attempts_left"] == 2
    assert r.reason == "waiting for the one-time code (2 attempts left)"
    assert flow.verify_code("123456") == [Audit("idv.verified", "C-300: by otp"), Publish()]
    assert (r.verified_by, r.reason) == ("otp", "verified by one-time code")


def test_a_one_time_code_that_cannot_be_sent_leaves_the_caller_identified_only():
    flow, _ = identified(DAN, otp_webhook="https://sms.example/send")
    assert flow.code_sent("HTTP 502") == [Publish()]
    r = flow.record
    assert (r.step, r.status, r.code_kind) == (Step.DONE, Status.IDENTIFIED, None)
    assert r.reason == "not enrolled for voice ID, and the one-time code could not be sent"
    assert notes(flow)[-2:] == ["the one-time code could not be sent (HTTP 502)", r.reason]


def test_a_one_time_code_expires_by_the_clock():
    clock = Clock()
    flow, _ = identified(DAN, clock=clock, otp_webhook="https://sms.example/send", otp_ttl=300.0)
    flow.code_sent(None)
    clock.now += 300.5
    assert flow.verify_code("123456") == [Publish()]  # right, but too late: counted as wrong
    assert flow.record.code_attempts == 1 and flow.record.verified_by is None


# -- the voice ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("wait", "said"), [(20.0, "20 s"), (1.0, "1 s"), (2.5, "2.5 s")])
def test_a_voice_still_inconclusive_when_the_wait_ends_is_offered_a_pin(wait, said):
    clock = Clock()
    flow, _ = identified(ALICE, clock=clock, voice_wait=wait)
    assert flow.wakes_at == 1000.0 + wait
    clock.now = 1000.0 + wait - 0.01
    assert flow.tick() == []
    clock.now = 1000.0 + wait
    assert flow.tick() == [Publish()]
    assert (flow.record.step, flow.record.code_kind) == (Step.CODE, "pin")
    assert flow.record.reason == f"voice ID inconclusive after {said}: waiting for the customer's PIN"
    assert flow.wakes_at is None and flow.tick() == []


def test_an_early_mismatch_is_shown_but_not_acted_on_and_a_decided_one_withdraws_the_pin_prompt():
    flow, _ = identified(ALICE)
    flow.on_verdict("C-100", Verdict("inconclusive", 0.0))
    assert flow.on_verdict("C-100", Verdict("not_authenticated", 1.5, 0.40, 0.61), early=True) == [Publish()]
    r = flow.record
    assert r.voice == {
        "decision": "not_authenticated",
        "speech_seconds": 1.5,
        "score": 0.4,
        "threshold": 0.61,
        "early": True,
    }
    assert (r.step, r.verified_by) == (Step.VOICE, None) and "did not match" not in r.reason
    assert flow.wakes_at is not None  # still listening
    assert flow.ask_code() == [Publish()]  # an early decision does not block a PIN
    assert (r.step, r.reason) == (Step.CODE, "the agent asked: waiting for the customer's PIN")

    effects = flow.on_verdict("C-100", Verdict("not_authenticated", 3.0, 0.40, 0.64))
    assert effects == [Audit("idv.voice_mismatch", "C-100: at 3.0 s"), Publish()]
    assert r.step == Step.DONE
    assert r.reason == "the voice did not match the customer's print: verify by other means"
    # The page never says why: only that the agent will help.
    assert flow.customer_view() == {"type": "idv", "step": "done", "message": "Thank you. Your agent will help you."}
    with pytest.raises(Conflict, match="cannot override"):
        flow.ask_code()
    with pytest.raises(Conflict):
        flow.verify_code("4321")


def test_a_decided_mismatch_withdraws_a_pin_verification_until_the_voice_matches_on_more_speech():
    flow = verified_by_pin(ALICE)
    r = flow.record
    assert flow.on_verdict("C-100", Verdict("not_authenticated", 3.0, 0.3, 0.64)) == [
        Audit("idv.voice_mismatch", "C-100: at 3.0 s"),
        Publish(),
    ]
    assert (r.verified_by, r.status) == (None, Status.IDENTIFIED)
    assert r.reason == "the voice did not match the customer's print (was verified by PIN): verify by other means"
    with pytest.raises(Conflict, match="cannot override"):
        flow.ask_code()
    # The same decision on more speech changes nothing more.
    assert flow.on_verdict("C-100", Verdict("not_authenticated", 6.0, 0.3, 0.65)) == [Publish()]
    assert sum("did not match" in n for n in notes(flow)) == 1
    # A match on more speech: the latest decision stands.
    assert flow.on_verdict("C-100", Verdict("authenticated", 6.0, 0.7, 0.65)) == [
        Audit("idv.verified", "C-100: by voice"),
        Publish(),
    ]
    assert r.verified_by == "voice"


def test_a_voice_decided_while_the_pin_is_checked_stands():
    flow, _ = identified(ALICE)
    flow.ask_code()
    assert flow.verify_code("4321") == [CheckPin("C-100", "4321")]
    flow.on_verdict("C-100", Verdict("not_authenticated", 3.0, 0.3, 0.64))
    assert flow.pin_checked(True) == []  # a late answer changes nothing
    assert flow.record.verified_by is None and "did not match" in flow.record.reason


def test_a_spoofed_voice_never_verifies_and_a_caller_waiting_on_it_is_asked_for_their_pin():
    flow, _ = identified(ALICE)
    r = flow.record
    effects = flow.on_spoof()
    assert effects[0] == Audit("idv.spoof_suspected", "C-100: the voice sounds replayed or synthetic")
    assert r.spoof and (r.step, r.code_kind) == (Step.CODE, "pin")
    assert r.reason == "possible synthetic or replayed voice: waiting for the customer's PIN"
    # Voice ID says spoof_suspected of a matching voice; even an "authenticated" verdict no longer verifies.
    for decision in ("spoof_suspected", "authenticated"):
        flow.on_verdict("C-100", Verdict(decision, 3.0, 0.9, 0.64))
        assert r.verified_by is None and r.step == Step.CODE
    assert flow.on_spoof() == []  # once is enough
    assert flow.verify_code("4321") == [CheckPin("C-100", "4321")]
    flow.pin_checked(True)
    assert r.verified_by == "pin"  # a factor a recording does not have


def test_a_spoof_decided_after_the_voice_verified_withdraws_it():
    flow, _ = identified(ALICE)
    r = flow.record
    flow.on_verdict("C-100", Verdict("authenticated", 3.0, 0.9, 0.64))
    assert r.verified_by == "voice"
    effects = flow.on_spoof()
    assert effects[0] == Audit("idv.spoof_suspected", "C-100: the voice sounds replayed or synthetic")
    assert (r.verified_by, r.status, r.step) == (None, Status.IDENTIFIED, Step.CODE)
    assert "possible synthetic or replayed voice" in r.reason
    assert "possible synthetic or replayed voice: no longer verified by voice" in notes(flow)


def test_a_spoof_on_a_caller_verified_by_pin_is_noted_and_keeps_the_pin():
    flow = verified_by_pin(BOB)
    assert flow.on_spoof()[-1] == Publish()
    assert flow.record.verified_by == "pin" and flow.record.spoof


def test_a_verdict_on_another_claimed_customer_is_ignored():
    flow, _ = identified(ALICE)
    before = flow.agent_view()
    assert flow.on_verdict("C-200", Verdict("authenticated", 3.0, 0.9, 0.64)) == []
    assert flow.agent_view() == before
    nobody = new_flow()
    nobody.begin()
    assert nobody.on_verdict("C-100", Verdict("authenticated", 3.0)) == [] and nobody.record.voice is None


def test_a_watchlist_alert_raises_the_risk_and_keeps_each_entry_once():
    flow = new_flow()
    flow.begin()
    hit = {"watchlist_id": "FRAUD-1", "reason": "account takeover, case 881", "score": 0.912}
    assert flow.on_alert([hit]) == [Publish()]
    flow.on_alert([hit, {"watchlist_id": "FRAUD-2", "reason": "case 9", "score": 0.877}])
    r = flow.record
    assert r.risk == "high"
    assert r.watchlist_hits == [
        {"watchlist_id": "FRAUD-1", "reason": "account takeover, case 881"},
        {"watchlist_id": "FRAUD-2", "reason": "case 9"},
    ]
    assert "0.9" not in json.dumps(r.to_dict()) and "0.8" not in json.dumps(r.to_dict())  # no score kept
    assert notes(flow)[-1] == "the voice matches the fraud watch list"


# -- enrolment consent ---------------------------------------------------------------------------------------------


def test_consent_is_asked_only_of_a_verified_caller_with_voice_id_on():
    flow, _ = identified(BOB)
    with pytest.raises(Conflict, match="enrol only a verified caller"):
        flow.ask_consent()
    with pytest.raises(Conflict, match="voice ID is off"):
        verified_by_pin(voice=False).ask_consent()
    with pytest.raises(Conflict, match="opted out"):
        verified_by_pin(facts=Facts(prints={"C-200": VoicePrint.OPTED_OUT})).ask_consent()


def test_a_declined_voice_print_is_an_opt_out():
    flow = verified_by_pin()
    answer, effects = flow.ask_consent()
    assert answer == {"state": "asked"} and flow.consent_asked
    assert effects == [ToCustomer({"type": "enrol_consent", "wording": WORDING}), Publish()]
    assert flow.consent_prompt() == {"type": "enrol_consent", "wording": WORDING}
    answer, effects = flow.answer_consent(False)
    assert answer == {"state": "declined"} and not flow.consent_asked
    assert effects == [
        OptOut("C-200"),
        ToAgent({"type": "enrolment", "link_id": "L-1", "state": "declined", "customer_id": "C-200"}),
        Publish(),
    ]
    assert notes(flow)[-1] == "the customer declined a voice print"
    with pytest.raises(Conflict, match="no voice print consent"):
        flow.answer_consent(True)


def test_declining_a_new_print_keeps_the_one_held():
    flow, _ = identified(ALICE)
    flow.on_verdict("C-100", Verdict("authenticated", 3.0, 0.8, 0.64))
    flow.ask_consent()
    _, effects = flow.answer_consent(False)
    assert not any(isinstance(e, OptOut) for e in effects)


def test_an_agreed_voice_print_records_consent_and_collects_the_speech():
    flow = verified_by_pin()
    flow.ask_consent()
    answer, effects = flow.answer_consent(True)
    assert answer == {"state": "collecting"}
    assert effects == [
        RecordConsent("C-200", "customer, on their page (call L-1)", WORDING),
        CollectEnrolment("C-200", 0.0),
        ToAgent({"type": "enrolment", "link_id": "L-1", "state": "collecting", "customer_id": "C-200"}),
        Publish(),
    ]
    assert notes(flow)[-1] == "the customer agreed to a voice print: collecting their speech"


def test_an_enrolment_with_consent_on_record_goes_on_without_asking():
    pending = {"speech_seconds": 7.5, "needed": 20.0, "consent": {"by": "agent-7"}}
    flow = verified_by_pin(facts=Facts(enrolments={"C-200": pending}))
    answer, effects = flow.ask_consent()
    assert answer == {"state": "collecting", **pending}
    assert effects == [CollectEnrolment("C-200", 7.5), Publish()]
    assert not flow.consent_asked
    assert notes(flow)[-1] == "enrolment continues from 7.5 s (consent on record)"


def test_a_finished_enrolment_is_noted_and_the_customer_told():
    flow = verified_by_pin()
    assert flow.enrolment_finished(Progress("C-200", 20.4, 20.0, True)) == [
        ToCustomer({"type": "enrolment", "state": "enrolled"}),
        Publish(),
    ]
    assert notes(flow)[-1] == "voice print enrolled from 20 s of speech"
    assert flow.enrolment_finished(Progress("C-200", 20.4, 20.0, False, "the voice is on the watch list")) == [
        Publish()
    ]
    assert notes(flow)[-1] == "enrolment refused: the voice is on the watch list"


# -- the end, and refusals -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "waiting"),
    [
        (lambda: new_flow(phone=ALICE.phones[0]), "looking up the calling number"),
        (lambda: identified(ALICE)[0], "verifying the voice"),
        (lambda: identified(BOB)[0], "waiting for the PIN or code"),
    ],
)
def test_closing_writes_down_what_was_awaited(start: Callable[[], IdvFlow], waiting: str):
    flow = start()
    if flow.record.step == Step.LOOKUP:
        flow.begin()
    who = flow.record.customer_id
    assert flow.close() == [Publish()]
    assert (flow.record.step, flow.record.reason) == (Step.DONE, f"the call ended while {waiting}")
    assert flow.wakes_at is None and flow.close() == []
    assert flow.phone_found([ALICE]) == [] and flow.record.customer_id == who  # a late answer changes nothing


def test_bad_input_and_steps_not_open_are_refused_and_not_counted():
    flow = new_flow()
    with pytest.raises(Conflict, match="not identified yet"):
        flow.ask_code()
    flow.begin()
    with pytest.raises(Invalid, match="at most 64"):
        flow.identify("  ")
    with pytest.raises(Invalid, match="at most 64"):
        flow.identify("x" * 65)
    with pytest.raises(Conflict, match="no PIN or code"):
        flow.verify_code("1234")
    flow.identify("C-200")
    with pytest.raises(Conflict, match="still being checked"):  # the driver's lock keeps this from happening
        flow.identify("C-200")
    flow.customer_found(BOB)
    with pytest.raises(Conflict, match="being asked already"):
        flow.ask_code()
    assert flow.record.identify_attempts == 0 and flow.record.code_attempts == 0
    flow.verify_code("2468")
    flow.pin_checked(True)
    with pytest.raises(Conflict, match="verified already"):
        flow.ask_code()


# -- the session: the machine's effects run against a directory, a store, voice ID and an SMS gateway -------------


class MemoryDirectory:
    """The operator's CRM, as ``RestDirectory`` would answer for it: slow, down, or broken on demand."""

    def __init__(self, *customers: Customer, down: bool = False) -> None:
        self.customers, self.down = customers, down

    async def by_phone(self, number: str) -> list[Customer]:
        await asyncio.sleep(0.01)  # a real lookup takes a while: the call is answered meanwhile
        if self.down:
            raise DirectoryError("the customer directory did not answer (TimeoutError)")
        return [c for c in self.customers if number in c.phones]

    async def by_id(self, customer_id: str) -> Customer | None:
        if customer_id == "crash":
            raise RuntimeError("a bug in the directory")
        if self.down:
            raise DirectoryError("the customer directory did not answer (TimeoutError)")
        return next((c for c in self.customers if c.id.lower() == customer_id.lower()), None)


class VoiceIdStandIn:
    def __init__(self, enrolled: tuple[str, ...] = ()) -> None:
        self.prints, self.opted_out, self.consents = set(enrolled), set(), []

    def enrolled(self, customer_id: str) -> bool:
        return customer_id in self.prints

    def status(self, customer_id: str) -> dict:
        return {"opted_out": customer_id in self.opted_out}

    def consent(self, customer_id: str, *, by: str, wording: str) -> None:
        self.consents.append((customer_id, by, wording))

    def opt_out(self, customer_id: str, actor: str) -> None:
        self.opted_out.add(customer_id)


class CallVoiceStandIn:
    def __init__(self) -> None:
        self.claimed: list[str] = []
        self.enrolling: list[tuple[str, float]] = []

    def claim(self, customer_id: str) -> None:
        self.claimed.append(customer_id)

    def enrol(self, customer_id: str, already: float) -> None:
        self.enrolling.append((customer_id, already))


class SmsGateway:
    """``aiohttp.ClientSession.post`` as the session uses it: an async context manager with a status."""

    def __init__(self, status: int = 200, error: Exception | None = None) -> None:
        self.status, self.error, self.sent = status, error, []

    def post(self, url: str, *, json: dict, timeout: aiohttp.ClientTimeout) -> SmsGateway:
        self.sent.append((url, json, timeout.total))
        return self

    async def __aenter__(self) -> SmsGateway:
        if self.error:
            raise self.error
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


@dataclass
class Call:
    session: LiveIdv
    agent: list[dict]
    page: list[dict]

    @property
    def id(self) -> str:
        return self.session.call_id

    @property
    def store(self) -> SqliteStore:
        return self.session.ctx.store

    def saved(self) -> dict:
        return self.store.idv.get(self.id)

    def audited(self) -> list[tuple]:
        return [
            (r["actor"], r["action"], r["target"], r["detail"]) for r in self.store.audit.log() if r["actor"] == "idv"
        ]


def real_store() -> SqliteStore:
    """The embedded store, with Alice's and Bob's PINs and an agent whose link the call came through."""
    store = SqliteStore(Path(tempfile.mkdtemp(prefix="idv-flow-")) / "voxgate.db")
    store.customers.put(ALICE, hash_password("4321"))
    store.customers.put(BOB, hash_password("2468"))
    store.customers.put(DAN)
    store.agents.add("agent-7", "x", "y")
    return store


def start(
    phone: str | None = None, *, down: bool = False, http: SmsGateway | None = None, voice: bool = True, **settings
) -> Call:
    store = real_store()
    link = store.links.add("hash", 1, customer_ref=None, phone=phone, language="en", reason="r", phrase="p", ttl=600)
    ctx = IdvContext(
        IdvSettings(**settings),
        MemoryDirectory(ALICE, BOB, DAN, down=down),
        store,
        VoiceIdStandIn(enrolled=("C-100",)),
        http,
        "Acme",
        SecretChecks(b"pepper"),
    )
    agent: list[dict] = []
    page: list[dict] = []
    session = LiveIdv(
        ctx, link.id, phone, CallVoiceStandIn() if voice else None, agent.append, page.append, texts=TEXTS
    )
    session.begin()
    return Call(session, agent, page)


async def until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_the_session_looks_up_the_calling_number_off_the_callers_path_and_publishes_each_change():
    call = start(ALICE.phones[0], voice_wait=0.05)
    s = call.session
    assert s.record.step == Step.LOOKUP  # begin() returned before the lookup did
    await until(lambda: s.record.step == Step.VOICE)
    assert s.voice.claimed == ["C-100"]
    assert call.saved() == s.record.to_dict()
    assert call.agent[-1] == {"type": "idv", "link_id": call.id, **s.record.to_dict()}
    assert call.page[-1] == s.customer_view()
    s.on_verdict("C-100", Verdict("authenticated", 3.0, 0.8, 0.64))
    assert s.record.verified_by == "voice" and call.saved()["verified_by"] == "voice"
    await asyncio.sleep(0.1)  # past the voice wait: verified, so nothing more is asked
    assert s.record.step == Step.DONE and s.record.code_kind is None
    assert call.audited() == [
        ("idv", "idv.identified", call.id, "C-100: by phone"),
        ("idv", "idv.verified", call.id, "C-100: by voice"),
    ]
    await s.close()


async def test_the_session_offers_a_pin_when_the_voice_wait_ends():
    call = start(ALICE.phones[0], voice_wait=0.05)
    s = call.session
    await until(lambda: s.record.step == Step.CODE)
    assert s.record.reason == "voice ID inconclusive after 0.05 s: waiting for the customer's PIN"
    assert call.page[-1]["step"] == "code" and call.page[-1]["code_kind"] == "pin"
    assert await s.verify_code("4321") == {"type": "idv", "step": "done", "message": "Thank you, that is right."}
    assert s.record.verified_by == "pin"
    await s.close()


async def test_closing_the_session_stops_the_voice_wait():
    call = start(ALICE.phones[0], voice_wait=0.05)
    s = call.session
    await until(lambda: s.record.step == Step.VOICE)
    await s.close()
    await asyncio.sleep(0.1)
    assert (s.record.step, s.record.code_kind) == (Step.DONE, None)
    assert s.record.reason == "the call ended while verifying the voice"
    assert call.saved()["reason"] == s.record.reason


async def test_two_wrong_pins_at_once_count_as_two_attempts():
    call = start(BOB.phones[0])
    s = call.session
    await until(lambda: s.record.step == Step.CODE)
    first, second = await asyncio.gather(s.verify_code("1111"), s.verify_code("1111"))
    assert (first["attempts_left"], second["attempts_left"]) == (2, 1)
    assert s.record.code_attempts == 2
    await s.close()


async def test_a_directory_that_is_down_is_told_to_both_sides():
    call = start(DAN.phones[0], down=True)
    s = call.session
    await until(lambda: s.record.step == Step.IDENTIFY)
    assert s.record.reason.startswith("calling-number lookup failed: the customer directory did not answer")
    page = await s.identify("C-300")
    assert page["message"] == "We cannot check customer numbers right now. Your agent will help you."
    assert s.record.identify_attempts == 0 and "directory is unavailable" in call.agent[-1]["reason"]
    with pytest.raises(Invalid):
        await s.identify("")
    with pytest.raises(Conflict):
        await s.verify_code("1234")
    await s.close()
    assert call.saved()["reason"] == "the call ended while waiting for the customer's number"


async def test_the_session_identifies_by_customer_number_and_asks_for_the_pin():
    call = start(None)
    s = call.session
    await until(lambda: s.record.step == Step.IDENTIFY)
    assert (await s.identify("nobody"))["attempts_left"] == 2
    page = await s.identify("c-200")
    assert page["step"] == "code" and s.record.customer_id == "C-200"
    assert (await s.skip())["step"] == "done"
    assert s.record.reason == "the customer chose to go on without verifying"
    record = await s.ask_code()
    assert record["step"] == "code" and record["reason"] == "the agent asked: waiting for the customer's PIN"
    await s.close()


async def test_an_action_cut_short_does_not_leave_the_flow_waiting():
    call = start(None)
    s = call.session
    await until(lambda: s.record.step == Step.IDENTIFY)
    with pytest.raises(RuntimeError):
        await s.identify("crash")
    assert (await s.identify("C-200"))["step"] == "code" and s.record.identify_attempts == 0
    await s.close()


async def test_a_one_time_code_goes_out_through_the_webhook():
    sms = SmsGateway()
    call = start(DAN.phones[0], http=sms, otp_webhook="https://sms.example/send")
    s = call.session
    await until(lambda: s.record.step == Step.CODE)
    [(url, body, timeout)] = sms.sent
    assert (url, timeout) == ("https://sms.example/send", 5)
    code = body.pop("code")
    assert body == {"customer_id": "C-300", "phone": DAN.phones[0], "expires_in": 300}
    assert len(code) == 6 and code.isdigit()
    assert code not in json.dumps([call.agent, call.page, call.saved(), call.audited()])
    wrong = "000000" if code != "000000" else "111111"
    assert (await s.verify_code(wrong))["attempts_left"] == 2
    assert (await s.verify_code(code))["step"] == "done" and s.record.verified_by == "otp"
    await s.close()


@pytest.mark.parametrize(
    ("sms", "failure"),
    [
        (SmsGateway(status=502), "HTTP 502"),
        (SmsGateway(error=aiohttp.ClientConnectionError()), "ClientConnectionError"),
    ],
)
async def test_a_one_time_code_that_cannot_be_sent(sms: SmsGateway, failure: str):
    call = start(DAN.phones[0], http=sms, otp_webhook="https://sms.example/send")
    s = call.session
    await until(lambda: s.record.step == Step.DONE)
    assert s.record.reason == "not enrolled for voice ID, and the one-time code could not be sent"
    assert f"the one-time code could not be sent ({failure})" in [h["what"] for h in s.record.history]
    await s.close()


async def test_consent_in_the_session_reaches_voice_id_and_both_screens():
    call = start(BOB.phones[0])
    s = call.session
    await until(lambda: s.record.step == Step.CODE)
    await s.verify_code("2468")
    assert s.ask_consent() == {"state": "asked"} and s.consent_asked
    assert call.page[-2] == s.consent_prompt() == {"type": "enrol_consent", "wording": WORDING}
    assert s.answer_consent(True) == {"state": "collecting"}
    assert s.ctx.voice_id.consents == [("C-200", f"customer, on their page (call {call.id})", WORDING)]
    assert s.voice.enrolling == [("C-200", 0.0)]
    assert {"type": "enrolment", "link_id": call.id, "state": "collecting", "customer_id": "C-200"} in call.agent
    s.enrolment_finished(Progress("C-200", 20.0, 20.0, True))
    assert {"type": "enrolment", "state": "enrolled"} in call.page
    s.ask_consent()
    assert s.answer_consent(False) == {"state": "declined"} and "C-200" in s.ctx.voice_id.opted_out
    await s.close()
