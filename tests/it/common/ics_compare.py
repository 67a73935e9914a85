"""Compares tandem's copies with their sources as Python's icalendar reads them.

icalendar is the independent parser: it unfolds and splits every content line of the source and
of each copy (name, parameters, raw value), and this script builds the component trees from those
lines. A copy must hold the source's components, properties, parameters and values in the
source's order; the only differences allowed are the documented rewrites: ORGANIZER/ATTENDEE
addresses and their SENT-BY/DELEGATED-* parameters mapped by the rewrite rules, and
SCHEDULE-AGENT=CLIENT on ORGANIZER/ATTENDEE of the item's own components.

stdin (JSON): {"domains": {old: new}, "addresses": {old: new}, "cases": [case]}, where a case is
{"name": str, "source": str, "outputs": [str] or null (tandem rejected the source),
"order": bool}. Without `order` the copy is compared as a server that re-serialises what it
stores would hold it (Radicale and Xandikos do): properties, parameters, components and RRULE
parts in any order, every value still exact.
stdout (JSON): per case {"name", "problems": [str], "reads": bool, "uids": bool}: `reads` says
icalendar's own Calendar.from_ical reads the source, `uids` that every component carries a UID.
"""

import json
import sys

from icalendar import Calendar
from icalendar.parser import Contentlines

ADDRESS_PROPS = ("ORGANIZER", "ATTENDEE")
ADDRESS_PARAMS = ("SENT-BY", "DELEGATED-TO", "DELEGATED-FROM")


def tree(text):
    """The VCALENDARs of `text`, as {"name", "props", "subs"} built from icalendar's lines."""
    text = text.removeprefix("\ufeff")
    stack, done = [], []
    for line in Contentlines.from_ical(text):
        if not line:
            continue
        name, params, value = line.raw_parts()
        name = name.upper()
        if name == "BEGIN":
            stack.append({"name": value.strip().upper(), "props": [], "subs": []})
        elif name == "END":
            comp = stack.pop()
            if comp["name"] != value.strip().upper():
                raise ValueError(f"END:{value} closes {comp['name']}")
            (stack[-1]["subs"] if stack else done).append(comp)
        else:
            plist = [
                [key.upper(), list(val) if isinstance(val, list) else [val]]
                for key, val in params.items()
            ]
            stack[-1]["props"].append({"name": name, "params": plist, "value": value})
    if stack:
        raise ValueError(f"BEGIN:{stack[-1]['name']} is never ended")
    return done


def uid(comp):
    for p in comp["props"]:
        if p["name"] == "UID":
            return p["value"].strip() or None
    return None


def items(cals):
    """One item per UID and VCALENDAR, first seen first: the calendar's properties, its time
    zones and UID-less components, and the components of that UID, in the source's order."""
    out = []
    for cal in cals:
        uids = []
        for s in cal["subs"]:
            if s["name"] != "VTIMEZONE" and uid(s) and uid(s) not in uids:
                uids.append(uid(s))
        for u in uids:
            subs = [s for s in cal["subs"] if s["name"] == "VTIMEZONE" or uid(s) in (None, u)]
            out.append({"name": cal["name"], "props": cal["props"], "subs": subs})
    return out


class Rewrites:
    def __init__(self, domains, addresses):
        self.domains = {k.lower(): v for k, v in domains.items()}
        self.addresses = {k.lower(): v for k, v in addresses.items()}

    def uri(self, value):
        if value[:7].lower() != "mailto:":
            return value
        scheme, addr = value[:7], value[7:]
        if addr.lower() in self.addresses:
            return scheme + self.addresses[addr.lower()]
        local, at, domain = addr.rpartition("@")
        if at and domain.lower() in self.domains:
            return f"{scheme}{local}@{self.domains[domain.lower()]}"
        return value

    def apply(self, comp, own):
        """The copy tandem should write of `comp`."""
        props = []
        for p in comp["props"]:
            value = self.uri(p["value"]) if p["name"] in ADDRESS_PROPS else p["value"]
            params = [
                [k, [self.uri(v) for v in vs] if k in ADDRESS_PARAMS else vs]
                for k, vs in p["params"]
            ]
            if own and p["name"] in ADDRESS_PROPS:
                agent = next((q for q in params if q[0] == "SCHEDULE-AGENT"), None)
                if agent:
                    agent[1] = ["CLIENT"]
                else:
                    params.append(["SCHEDULE-AGENT", ["CLIENT"]])
            props.append({"name": p["name"], "params": params, "value": value})
        top = comp["name"] == "VCALENDAR"
        subs = [
            self.apply(s, top and s["name"] != "VTIMEZONE" and uid(s) is not None)
            for s in comp["subs"]
        ]
        return {"name": comp["name"], "props": props, "subs": subs}


def unordered(comp):
    """`comp` with everything whose order carries no meaning in a canonical order."""
    props = []
    for p in comp["props"]:
        value = p["value"]
        if p["name"] in ("RRULE", "EXRULE"):
            value = ";".join(sorted(value.split(";")))
        props.append({"name": p["name"], "params": sorted(p["params"]), "value": value})
    subs = [unordered(s) for s in comp["subs"]]
    return {
        "name": comp["name"],
        "props": sorted(props, key=lambda p: json.dumps(p, sort_keys=True)),
        "subs": sorted(subs, key=lambda c: json.dumps(c, sort_keys=True)),
    }


def differences(want, got, path, out):
    path = f"{path}/{want['name']}"
    if want["name"] != got["name"]:
        out.append(f"{path}: component {got['name']} where the source has {want['name']}")
        return
    wp, gp = want["props"], got["props"]
    for i in range(max(len(wp), len(gp))):
        w = wp[i] if i < len(wp) else None
        g = gp[i] if i < len(gp) else None
        if w != g:
            out.append(f"{path}: property {i}: source {short(w)} copy {short(g)}")
            break
    ws, gs = want["subs"], got["subs"]
    if [s["name"] for s in ws] != [s["name"] for s in gs]:
        out.append(
            f"{path}: components {[s['name'] for s in gs]} "
            f"where the source has {[s['name'] for s in ws]}"
        )
        return
    for w, g in zip(ws, gs):
        differences(w, g, path, out)


def short(prop):
    text = json.dumps(prop, ensure_ascii=False)
    return text if len(text) < 300 else text[:300] + "…"


def check(case, rewrites):
    problems = []
    try:
        source = tree(case["source"])
    except Exception as e:
        return {"problems": [f"icalendar cannot read the source: {e}"], "reads": False,
                "uids": False}
    try:
        cals = Calendar.from_ical(case["source"].removeprefix("\ufeff"), multiple=True)
        reads = True
        uids = all(
            "UID" in c for cal in cals for c in cal.subcomponents if c.name != "VTIMEZONE"
        )
    except Exception:
        reads, uids = False, False
    if case["outputs"] is None:
        return {"problems": [], "reads": reads, "uids": uids}
    want = items(source)
    if len(want) != len(case["outputs"]):
        problems.append(f"{len(case['outputs'])} items where the source has {len(want)} UIDs")
    for n, (w, text) in enumerate(zip(want, case["outputs"])):
        try:
            got = tree(text)
        except Exception as e:
            problems.append(f"item {n}: icalendar cannot read tandem's copy: {e}")
            continue
        if len(got) != 1:
            problems.append(f"item {n}: {len(got)} VCALENDARs in the copy")
            continue
        want_copy, got_copy = rewrites.apply(w, False), got[0]
        if not case.get("order", True):
            want_copy, got_copy = unordered(want_copy), unordered(got_copy)
        differences(want_copy, got_copy, f"item {n} ({uid_of(w)})", problems)
    return {"problems": problems, "reads": reads, "uids": uids}


def uid_of(item):
    return next((uid(s) for s in item["subs"] if uid(s)), None)


def main():
    job = json.load(sys.stdin)
    rewrites = Rewrites(job.get("domains", {}), job.get("addresses", {}))
    out = []
    for case in job["cases"]:
        result = check(case, rewrites)
        result["name"] = case["name"]
        out.append(result)
    json.dump(out, sys.stdout)


main()
