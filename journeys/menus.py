"""The visual IVR, live: a customer's way through an operator's menu (``journeys.menu_file``), on their phone from
a one-time link, in their language.

* **``MenuSession``**, the navigation as a pure state machine: the current screen, the values entered, the
  history for the back button, and the step each input makes. Actions that need I/O come back to the caller
  (``Outcome.run``), whose answers are inputs again (``shown``, ``handed``, ``idv_finished``).
* **``MenuService``**, over ``calls.CallService``: menu links (``POST /api/links {"kind": "menu"}``), the
  customer's session behind a key (the link is used up on one device, as a video link is), and the effects:
  each step in the store (``store.steps``), as a customer event (``menu.choice``) and live on the console of
  the link's agent; ID&V through ``identity.idv.LiveIdv`` without media; the hand-off to a free agent of a skill
  queue on a call's link (voice only for ``agent``, video for ``video``) that remembers the menu it came from
  (``detail.from``), or to the callback booking page.

Secrets never leave the session: a PIN or code goes to ID&V only, and a field marked ``secret`` is recorded as
entered, never with its value.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from calls.service import LINK_FIELDS, CallService, link_options
from identity.directory import DirectoryError, HttpClient
from identity.idv import LiveIdv, Status
from identity.idv import Step as IdvStep
from journeys.menu_file import (
    MAX_TEXT,
    Action,
    Field,
    FieldErrors,
    Menu,
    MenuError,
    Option,
    Problem,
    Screen,
    check_value,
    load_menus,
    text_in,
)
from journeys.settings import MenuSettings
from store.base import Agent, Link
from store.errors import Conflict, Forbidden, Gone, Invalid, NotFound, Refused, refuse_unknown
from store.security import Vault, new_token, token_hash

log = logging.getLogger(__name__)


def handoff_ref(vault: Vault, link_id: str) -> str:
    """What a menu hands the callback page as ``from``: its link id, signed. Link ids are not secret, and the agent
    who calls back is shown the menu's steps and ID&V: nobody may name another customer's menu."""
    mac = hmac.new(vault.derive("menu-handoff"), link_id.encode(), "sha256").hexdigest()[:32]
    return f"{link_id}.{mac}"


def handed_off_link(vault: Vault, ref: object) -> str | None:
    """The menu link id a ``handoff_ref`` names, or None for anything this server did not sign."""
    if not isinstance(ref, str) or ref.count(".") != 1 or len(ref) > 80:
        return None
    link_id = ref.split(".")[0]
    return link_id if hmac.compare_digest(ref, handoff_ref(vault, link_id)) else None


# -- the navigation: a pure state machine --------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one input did: the step to record (kind, detail) and the action to run, if any."""

    step: tuple[str, dict] | None = None
    run: Action | None = None


class MenuSession:
    """One customer's way through a menu. ``mode``: ``screen`` (choosing or entering), ``idv`` (identifying and
    verifying), ``result`` (an action's answer on screen), ``done`` (handed on: to an agent or a callback)."""

    def __init__(self, menu: Menu, today: Callable[[], date] = date.today) -> None:
        self.menu, self._today = menu, today
        self.screen_id = menu.start
        self.history: list[str] = []
        self.values: dict[str, str] = {}
        self.secret: set[str] = set()  # fields whose values are never recorded nor shown
        self.mode = "screen"
        self.result: dict | None = None  # the last action's answer: {"kind": ..., ...}
        self.after: str | None = None  # where "continue" goes from a result
        self.pending: Action | None = None  # an action waiting for ID&V to verify the customer
        self.idv_status: str | None = None  # ID&V's status once it finished
        self.customer_id: str | None = None  # who ID&V identified

    @property
    def screen(self) -> Screen:
        return self.menu.screens[self.screen_id]

    @property
    def verified(self) -> bool:
        return self.idv_status == Status.VERIFIED.value

    def choose(self, option_id: object) -> Outcome:
        self._need("screen")
        option = next((o for o in self.screen.options if o.id == str(option_id)), None)
        if option is None:
            raise Invalid(f"no option {option_id!r} on this screen")
        step = ("choice", {"screen": self.screen_id, "option": option.id, "label": text_in(option.label, "en")})
        return self._go(option, step)

    def enter(self, raw: object) -> Outcome:
        """The screen's fields, all at once; every refused one is in the ``FieldErrors``."""
        self._need("screen")
        fields = self.screen.fields
        if not fields:
            raise Conflict("this screen has no fields to enter")
        if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
            raise Invalid("values: an object of field names to values")
        if unknown := set(raw) - {f.name for f in fields}:
            raise Invalid(f"no such fields on this screen: {', '.join(sorted(unknown))}")
        values, problems = {}, {}
        for f in fields:
            value, problem = check_value(f, raw.get(f.name), self._today())
            if problem is not None:
                problems[f.name] = problem
            elif value is not None:
                values[f.name] = value
        if problems:
            raise FieldErrors(problems)
        self.values.update(values)
        self.secret |= {f.name for f in fields if f.secret}
        shown = {f.name: ("(entered)" if f.secret else values[f.name]) for f in fields if f.name in values}
        assert self.screen.then is not None
        return self._go(self.screen.then, ("entry", {"screen": self.screen_id, "values": shown}))

    def back(self) -> Outcome:
        if self.mode == "done":
            raise Gone("this menu has ended", "menu.ended")
        if self.mode in ("idv", "result"):
            self.mode, self.result, self.pending = "screen", None, None
        elif self.history:
            self.screen_id = self.history.pop()
        else:
            raise Conflict("this is the first screen")
        return Outcome(("choice", {"screen": self.screen_id, "back": True}))

    def proceed(self) -> Outcome:
        """Continue from an action's result: to the action's next screen, or back to where it was chosen."""
        self._need("result")
        self.mode, self.result = "screen", None
        if self.after and self.after != self.screen_id:
            self.history.append(self.screen_id)
            self.screen_id = self.after
        self.after = None
        return Outcome(("choice", {"screen": self.screen_id, "continue": True}))

    def idv_finished(self, status: str, customer_id: str | None) -> Outcome:
        """ID&V settled (verified, identified only, or not): run the action that waited for it, or say so."""
        self._need("idv")
        self.idv_status, self.customer_id = status, customer_id
        step = ("action", {"action": "idv", "status": status, "customer_id": customer_id})
        pending, self.pending = self.pending, None
        if pending is not None and self.verified:
            return Outcome(step, pending)
        key = "menu.verified" if self.verified else "menu.not_verified"
        self.mode, self.result = "result", {"kind": "message", "key": key}
        return Outcome(step)

    def idv_off(self) -> None:
        """No identity check on this server: the action cannot be done."""
        self._need("idv")
        self.pending, self.mode = None, "result"
        self.result = {"kind": "message", "key": "menu.unavailable"}

    def shown(self, rows: list[dict] | None, problem: str | None = None) -> None:
        """A show action's answer: the rows ({label, value}), or the text key of why there is none."""
        self.mode = "result"
        self.result = {"kind": "rows", "rows": rows} if rows else {"kind": "message", "key": problem or "menu.none"}

    def handed(self, kind: str, url: str | None, problem: str | None = None) -> None:
        """An agent, video or callback action's answer: the page to go to (the menu is over), or why not."""
        if url is not None:
            self.mode, self.result = "done", {"kind": "redirect", "url": url, "action": kind}
        else:
            self.mode, self.result = "result", {"kind": "message", "key": problem or "menu.unavailable"}
            if problem == "menu.nobody":
                self.result["offer"] = "callback"

    def take_offer(self) -> Outcome:
        """Nobody was free: the customer takes the callback offered instead."""
        self._need("result")
        if (self.result or {}).get("offer") != "callback":
            raise Conflict("no callback is offered now")
        return Outcome(("choice", {"screen": self.screen_id, "option": "callback offered"}), Action("callback"))

    def _go(self, option: Option, step: tuple[str, dict]) -> Outcome:
        if option.next is not None:
            self.history.append(self.screen_id)
            self.screen_id = option.next
            return Outcome(step)
        action = option.action
        assert action is not None
        self.after = action.next
        if action.type == "idv" or (action.type == "show" and action.verified and not self.verified):
            self.pending = None if action.type == "idv" else action
            self.mode = "idv"
            if self.idv_status is not None:  # settled already: a second check changes nothing
                return Outcome(step, self.idv_finished(self.idv_status, self.customer_id).run)
            return Outcome(step, Action("idv", action.next))
        return Outcome(step, action)

    def _need(self, mode: str) -> None:
        if self.mode == "done":
            raise Gone("this menu has ended", "menu.ended")
        if self.mode != mode:
            raise Conflict(f"not possible now (the menu is at its {self.mode} step)")

    def view(self, language: str, render: Callable[..., str]) -> dict:
        """What the page shows now, in ``language``; ``render(key, **params)`` gives the page's own texts."""
        s = self.screen
        view: dict[str, Any] = {
            "mode": self.mode,
            "can_back": self.mode in ("idv", "result") or (self.mode == "screen" and bool(self.history)),
            "screen": {
                "id": s.id,
                "title": text_in(s.title, language),
                "text": text_in(s.text, language),
                "options": [{"id": o.id, "label": text_in(o.label, language)} for o in s.options],
                "fields": [_field_view(f, language, self.values, self.secret) for f in s.fields],
                "submit": text_in(s.submit, language) or render("menu.continue"),
            },
            "result": None,
            "idv_status": self.idv_status,
        }
        if self.result is not None:
            r = dict(self.result)
            if r["kind"] == "message":
                r["message"] = render(r.pop("key"))
            view["result"] = r
            view["can_continue"] = self.mode == "result"
        return view


def _field_view(f: Field, language: str, values: dict, secret: set) -> dict:
    view = {
        "name": f.name,
        "type": f.type,
        "label": text_in(f.label, language),
        "hint": text_in(f.hint, language),
        "required": f.required,
        "value": "" if f.name in secret else values.get(f.name, ""),
        "secret": f.secret,
    }
    if f.min_length is not None:
        view["min_length"] = f.min_length
    if f.type in ("digits", "text"):
        view["max_length"] = f.max_length if f.max_length is not None else MAX_TEXT
    if f.choices:
        view["choices"] = [{"value": c.value, "label": text_in(c.label, language)} for c in f.choices]
    return view


# -- the service: links, sessions, effects ---------------------------------------------------------------------------


@dataclass
class _Live:
    """A started menu: its session behind the page's key, its language, its ID&V."""

    link: Link
    session: MenuSession
    key_hash: str
    language: str
    started: float
    idv: LiveIdv | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one step at a time: the order is the record


STEPS = ("choose", "enter", "back", "continue", "callback", "identify", "verify", "skip")


class MenuService:
    def __init__(self, settings: MenuSettings, calls: CallService, http: HttpClient | None = None) -> None:
        self.settings, self.calls, self.http = settings, calls, http or HttpClient()
        self.store, self.hub, self.texts = calls.store, calls.hub, calls.services.texts
        self.menus = load_menus(settings.dirs)
        self._check_queues()
        self.live: dict[str, _Live] = {}

    def _check_queues(self) -> None:
        """A menu's queue must be one the routing has: a typo would strand every customer who asks for it."""
        queues = self.calls.settings.routing.queues
        for menu in self.menus.values():
            for action in menu.actions():
                if action.queue is not None and action.queue not in queues:
                    raise MenuError(
                        f"{menu.source}: action {action.type!r}: no queue {action.queue!r} in the routing "
                        f"(queues: {', '.join(sorted(queues))})"
                    )

    # -- links ---------------------------------------------------------------------------------------------------

    async def create(self, agent: Agent, body: dict) -> tuple[Link, str, str]:
        """``POST /api/links {"kind": "menu", "menu": ID, ...}``, by an agent or the IVR's account."""
        refuse_unknown(body, {"kind", "menu", *LINK_FIELDS})
        menu_id = body.get("menu", "example" if "example" in self.menus else next(iter(self.menus)))
        if not isinstance(menu_id, str) or menu_id not in self.menus:
            raise Invalid(f"menu: one of {', '.join(sorted(self.menus))}")
        return await self.calls.create_link(agent, **link_options(body), kind="menu", detail={"menu": menu_id})

    # -- the customer's page ------------------------------------------------------------------------------------

    async def info(self, token: str, who: str, accept_language: str | None = None) -> dict:
        """What the page shows before it starts: company, phrase, the menu's title, in the customer's language.
        Marks the link opened (as a video link's first read does)."""
        link = await self._menu_link(token, who)
        info = await self.calls.join_info(token, who, accept_language)
        menu = self._menu_of(link)
        language = menu.language_for(link.language, accept_language)
        return {
            "company": info["company"],
            "phrase": info["phrase"],
            "expires_in": info["expires_in"],
            "language": language,
            "languages": menu.languages,
            "title": text_in(menu.title, language),
            "texts": self.texts.texts(language),
        }

    async def start(self, token: str, who: str, accept_language: str | None = None) -> dict:
        """Use the link up on this device: the page gets the key its steps carry, and the first screen."""
        link = await self._menu_link(token, who)
        menu = self._menu_of(link)
        await self._prune()
        if not self.store.links.consume(link.id):
            raise Gone("this link has been used; each link works once, on one device", "link.used")
        key = new_token(16)
        live = _Live(
            self.store.links.get(link.id) or link,
            MenuSession(menu, self._today),
            token_hash(key),
            menu.language_for(link.language, accept_language),
            self.store.clock(),
        )
        self.live[link.id] = live
        try:
            await self._claim(link.id)
        except Exception:
            await self._end(live, "the cluster could not record the menu")
            raise
        self.store.audit.add("customer", "menu.start", link.id, menu.id)
        self._link_changed(live.link)
        self._record(live, "action", {"action": "start", "menu": menu.id, "language": live.language})
        return {"key": key, **self._view(live)}

    async def state(self, token: str, key: object) -> dict:
        live = self._session(token, key)
        async with live.lock:
            await self._alive(live)
            if live.idv is not None:  # a slow directory answered since: the menu goes on
                await self._idv_settled(live)
            return self._view(live)

    async def step(self, token: str, body: dict) -> dict:
        """One input of the customer's, with the key: ``{"key", "step": STEP, ...}``; returns the new view."""
        live = self._session(token, body.get("key"))
        kind = body.get("step")
        if kind not in STEPS:
            raise Invalid(f"step: one of {', '.join(STEPS)}")
        async with live.lock:
            await self._alive(live)
            s = live.session
            if kind == "choose":
                await self._follow(live, s.choose(body.get("option")))
            elif kind == "enter":
                try:
                    outcome = s.enter(body.get("values"))
                except FieldErrors as e:
                    e.messages = {name: self._problem(live, p) for name, p in e.problems.items()}
                    raise
                await self._follow(live, outcome)
            elif kind == "back":
                await self._follow(live, s.back())
            elif kind == "continue":
                await self._follow(live, s.proceed())
            elif kind == "callback":
                await self._follow(live, s.take_offer())
            else:
                await self._idv_step(live, kind, body)
            return self._view(live)

    # -- running actions ----------------------------------------------------------------------------------------

    async def _follow(self, live: _Live, outcome: Outcome) -> None:
        if outcome.step is not None:
            self._record(live, *outcome.step)
        if outcome.run is not None:
            await self._run(live, outcome.run)

    async def _run(self, live: _Live, action: Action) -> None:
        if action.type == "idv":
            await self._begin_idv(live)
        elif action.type == "show":
            await self._show(live, action)
        elif action.type == "callback":
            await self._callback(live, action)
        else:
            await self._to_agent(live, action)

    async def _show(self, live: _Live, action: Action) -> None:
        s = live.session
        try:
            data = await (self._from_crm(live, action) if action.source == "rest" else self._from_directory(live))
        except DirectoryError as e:
            log.warning("menu %s: %s", live.link.id, e)
            s.shown(None, "menu.unavailable")
            self._record(live, "action", {"action": "show", "source": action.source, "ok": False, "error": str(e)})
            return
        rows = [
            {"label": text_in(label, live.language), "value": _shown(data.get(key))}
            for key, label in action.show
            if data is not None and data.get(key) not in (None, "", [])
        ]
        s.shown(rows)
        self._record(live, "action", {"action": "show", "source": action.source, "ok": bool(rows)})

    async def _from_directory(self, live: _Live) -> dict | None:
        customer_id = live.session.customer_id or live.link.customer_ref
        if not customer_id or self.calls.services.idv is None:
            return None
        customer = await self.calls.services.idv.directory.by_id(customer_id)
        if customer is None:
            return None
        return {"customer_id": customer.id, "name": customer.name, "phones": list(customer.phones)}

    async def _from_crm(self, live: _Live, action: Action) -> dict | None:
        """GET the action's URL with the entered values in it (each URL-quoted); a JSON object back."""
        assert action.url is not None
        values = {"customer_id": live.session.customer_id or live.link.customer_ref or "", "phone": live.link.phone}
        values = {k: quote(str(v or ""), safe="") for k, v in {**values, **live.session.values}.items()}
        url = action.url.format_map(_Blank(values))
        headers = {"Authorization": f"Bearer {self.settings.crm_token}"} if self.settings.crm_token else {}
        timeout = aiohttp.ClientTimeout(total=self.settings.crm_timeout)
        try:
            async with self.http.get(url, headers=headers, timeout=timeout) as r:
                if r.status == 404:
                    return None
                if r.status != 200:
                    raise DirectoryError(f"the CRM answered HTTP {r.status}")
                body = await r.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as e:
            raise DirectoryError(f"the CRM did not answer ({type(e).__name__})") from None
        if not isinstance(body, dict):
            raise DirectoryError("the CRM answered with no JSON object")
        return body

    async def _callback(self, live: _Live, action: Action) -> None:
        """The callback booking page, filled in with what the menu knows."""
        s, link = live.session, live.link
        query = {
            "phone": link.phone or "",
            "customer_id": s.customer_id or link.customer_ref or "",
            "subject": text_in(action.subject, live.language) if action.subject else "",
            "queue": action.queue or "",
            "language": live.language,
            "from": handoff_ref(self.calls.services.vault, link.id),
        }
        url = "/callback?" + urlencode({k: v for k, v in query.items() if v})
        s.handed("callback", url)
        self._record(live, "action", {"action": "callback", "queue": action.queue})
        await self._end(live, "the customer asked for a callback")

    async def _to_agent(self, live: _Live, action: Action) -> None:
        """A call's link with the first free agent of the option's queue (else the queue of the customer's likely
        reason, else the default), remembering this menu: ``agent`` asks for the microphone only, ``video`` for
        the camera too. Nobody free: say so."""
        s, link = live.session, live.link
        agent, queue = self.calls.route(s.customer_id or link.customer_ref, link.phone, action.queue)
        if agent is None:
            s.handed(action.type, None, "menu.nobody")
            self._record(live, "action", {"action": action.type, "queue": queue, "agent": None})
            return
        try:
            call, url, _ = await self.calls.create_link(
                agent,
                kind="video",
                detail={"from": link.id, **({"media": "audio"} if action.type == "agent" else {})},
                phone=link.phone,
                customer_ref=s.customer_id or link.customer_ref,
                language=link.language,  # the caller's, as the IVR gave it (the menu may not speak it)
            )
        except Refused as e:
            log.warning("menu %s: no call link for %s: %s", link.id, agent.name, e.message)
            s.handed(action.type, None, "menu.unavailable")
            self._record(live, "action", {"action": action.type, "queue": queue, "agent": None, "error": e.message})
            return
        s.handed(action.type, url)
        self._record(live, "action", {"action": action.type, "queue": queue, "agent": agent.name, "link_id": call.id})
        await self._end(live, f"handed to {agent.name} on call link {call.id}")

    # -- ID&V, without media --------------------------------------------------------------------------------------

    async def _begin_idv(self, live: _Live) -> None:
        ctx = self.calls.services.idv
        if ctx is None or not self.calls.idv_active():
            live.session.idv_off()
            return
        if live.idv is not None:  # under way (the customer went back, and came again): the page shows where it is
            await self._idv_settled(live)
            return
        first: asyncio.Future = asyncio.get_running_loop().create_future()

        def to_customer(message: dict | None) -> None:
            if not first.done():
                first.set_result(message)

        live.idv = LiveIdv(
            ctx,
            live.link.id,
            live.link.phone,
            None,
            partial(self.hub.publish, live.link.agent_id),
            to_customer,
            texts=partial(self.texts.render, live.language),
            page=True,
        )
        live.idv.begin()
        try:
            await asyncio.wait_for(asyncio.shield(first), timeout=self.settings.crm_timeout + 5.0)
        except TimeoutError:
            return  # the directory is slow: the page shows the check under way, and asks again
        await self._idv_settled(live)

    async def _idv_step(self, live: _Live, kind: str, body: dict) -> None:
        idv = live.idv
        if live.session.mode != "idv" or idv is None:
            raise Conflict("no identity check is under way")
        if kind == "identify":
            number = body.get("customer_id")
            await idv.identify(number if isinstance(number, str) else "")
            self._record(live, "entry", {"screen": "idv", "values": {"customer_number": "(entered)"}})
        elif kind == "verify":
            code = body.get("code")
            await idv.verify_code(code if isinstance(code, str) else "")
            kind_ = idv.record.code_kind or "code"
            self._record(live, "entry", {"screen": "idv", "values": {kind_: "(entered)"}})
        else:
            await idv.skip()
            self._record(live, "choice", {"screen": "idv", "skip": True})
        await self._idv_settled(live)

    async def _idv_settled(self, live: _Live) -> None:
        """ID&V done: the menu goes on (to the action that waited for it, or a message)."""
        assert live.idv is not None
        record = live.idv.record
        if record.step != IdvStep.DONE or live.session.mode != "idv":
            return
        await self._follow(live, live.session.idv_finished(record.status.value, record.customer_id))

    # -- views and records --------------------------------------------------------------------------------------

    def _view(self, live: _Live) -> dict:
        view = live.session.view(live.language, partial(self.texts.render, live.language))
        if live.session.mode == "idv" and live.idv is not None:
            view["idv"] = live.idv.customer_view()
        return view

    def _problem(self, live: _Live, problem: Problem) -> str:
        if problem.words:
            return text_in(problem.words, live.language)
        return self.texts.render(live.language, problem.key, **problem.params)

    def _record(self, live: _Live, kind: str, detail: dict) -> None:
        """One step, in order: in the store, as a customer event, and live on the link's agent's console."""
        link = live.link
        seq = self.store.steps.add(link.id, kind, detail)
        step = {"link_id": link.id, "seq": seq, "at": self.store.clock(), "step": kind, "detail": detail}
        customer = live.session.customer_id or link.customer_ref
        if customer or link.phone:
            try:
                event = {"step": kind, **detail}
                self.calls.context.record(customer, link.phone, "menu.choice", event, f"menu:{link.id}")
            except Refused as e:  # an event too large, say: the step is in the store all the same
                log.warning("menu %s: step not kept as a customer event: %s", link.id, e.message)
        message = {"type": "menu", "link_id": link.id, "step": step, "idv": live.session.idv_status}
        self.hub.publish(link.agent_id, message)

    async def _end(self, live: _Live, reason: str) -> None:
        if self.store.links.finish(live.link.id, "ended", reason):
            self.store.audit.add("customer", "menu.end", live.link.id, reason)
            self._link_changed(self.store.links.get(live.link.id))
        await self._drop(live)

    async def _claim(self, link_id: str) -> None:
        """This node holds the session (in memory): the page's next requests find their way here from any node,
        as a call's do, and the link is marked interrupted if this node dies."""
        if self.calls.cluster is not None:
            await self.calls.cluster.claim(link_id)

    async def _drop(self, live: _Live) -> None:
        """The session is over: out of memory, and no longer this node's in the cluster."""
        self.live.pop(live.link.id, None)
        if self.calls.cluster is not None:
            try:
                await self.calls.cluster.release(live.link.id)
            except Exception as e:  # over here all the same; its owner record goes when this node does
                log.warning("menu %s: the cluster did not hear that it ended: %s", live.link.id, e)

    def _link_changed(self, link: Link | None) -> None:
        if link is not None:
            self.hub.publish(link.agent_id, {"type": "link", "link": link.to_dict()})

    # -- the agent's side -------------------------------------------------------------------------------------------

    def for_agent(self, agent: Agent, link_id: str) -> dict:
        """A menu link's steps and ID&V, for its own agent or the agent of a call it led to."""
        link = self.store.links.get(link_id)
        if link is None or link.kind != "menu":
            raise NotFound("no such menu link")
        if link.agent_id != agent.id and not self._led_to(agent, link.id):
            raise NotFound("no such menu link")
        menu = self._menu_named(link)
        return {
            "link": link.to_dict(),
            "menu": {"id": menu.id, "title": text_in(menu.title, "en")} if menu else None,
            "steps": [s.__dict__ for s in self.store.steps.of(link.id)],
            "idv": self.store.idv.get(link.id),
        }

    def _led_to(self, agent: Agent, menu_link_id: str) -> bool:
        links = self.store.links.of_agent(agent.id, 200)
        return any((link.detail or {}).get("from") == menu_link_id for link in links)

    # -- helpers --------------------------------------------------------------------------------------------------

    async def _menu_link(self, token: str, who: str) -> Link:
        link = await self.calls.customer_link(token, who)
        if link.kind != "menu":
            raise Conflict(f"this link opens a {link.kind}, not a menu")
        return link

    def _menu_named(self, link: Link) -> Menu | None:
        return self.menus.get((link.detail or {}).get("menu", ""))

    def _menu_of(self, link: Link) -> Menu:
        menu = self._menu_named(link)
        if menu is None:
            raise Gone("this menu is no longer offered; ask for a new link", "menu.ended")
        return menu

    def _session(self, token: str, key: object) -> _Live:
        link = self.store.links.by_token(token_hash(token)) if isinstance(token, str) and token else None
        live = self.live.get(link.id) if link is not None else None
        if live is None or not isinstance(key, str) or not hmac.compare_digest(token_hash(key), live.key_hash):
            if link is not None and link.kind == "menu" and link.state == "ended":
                raise Gone("this menu has ended", "menu.ended")
            if link is not None and link.kind == "menu" and link.state == "interrupted":
                raise _interrupted()
            raise Forbidden("not this menu's customer")
        return live

    async def _alive(self, live: _Live) -> None:
        """The agent may revoke a menu in use, and a menu may not outlast its time: either way it is over, and its
        ID&V session with it."""
        link = self.store.links.get(live.link.id)
        if link is None or link.state in ("revoked", "interrupted"):  # interrupted: the cluster lost this node
            await self._drop(live)
            await self._close_idv(live)
            if link is not None and link.state == "interrupted":
                raise _interrupted()
            raise Gone("this link has been cancelled by the agent", "link.revoked")
        if self.store.clock() - live.started > self.settings.session_ttl:
            await self._end(live, "the menu's time ran out")
            await self._close_idv(live)
            raise Gone("this menu has timed out; ask for a new link", "menu.timed_out")

    async def _close_idv(self, live: _Live) -> None:
        if live.idv is not None:
            await live.idv.close()

    async def _prune(self) -> None:
        """Menus the customer left unfinished end when their time is up: memory stays bounded, and the consoles
        see them done."""
        now = self.store.clock()
        for live in [x for x in self.live.values() if now - x.started > self.settings.session_ttl]:
            await self._end(live, "the menu's time ran out")
            await self._close_idv(live)

    def _today(self) -> date:
        return date.fromtimestamp(self.store.clock())

    async def close(self) -> None:
        """The server stops: each session ends (its page is told so), and is no longer this node's."""
        for live in list(self.live.values()):
            await self._end(live, "the server stopped")
            await self._close_idv(live)


def _interrupted() -> Gone:
    """The node that held the session stopped (the cluster marked the link interrupted): it cannot go on."""
    return Gone("this menu was interrupted (its server stopped); ask for a new link", "menu.ended")


class _Blank(dict):
    """A value the customer has not entered (a field on a screen they did not visit) is empty in a URL."""

    def __missing__(self, key: str) -> str:
        return ""


def _shown(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)
