"""Blocklists and marketing compliance rules: what a variant may not say, whatever the backend.

The blocklists are matched locally for every backend (Azure can take minutes to apply a blocklist
edit); the compliance rules (unverifiable guarantees, false urgency, placeholders, unapproved
URLs, citations that were not retrieved) are this project's own and run the same way everywhere.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from personalization_assets.messages.prompts import MERGE_FIELDS
from personalization_assets.safety.claims import claims_in
from personalization_assets.safety.text import (
    UNSAFE_TEXT_PATTERNS,
    comparable,
    compile_phrase,
    normalize,
    unsafe_text_kinds,
)


@functools.lru_cache(maxsize=1024)
def _blocklist_term_pattern(term: str) -> re.Pattern[str]:
    words = r"\s+".join(re.escape(word) for word in normalize(term).split())
    return re.compile(rf"(?<!\w){words}(?!\w)", re.IGNORECASE)


def find_blocklist_hits(text: str, blocklists: Mapping[str, Sequence[str]]) -> list[str]:
    """Whole-word, case-insensitive blocklist matches as "listname:term", in blocklist order."""
    normalized = normalize(text)
    hits = (
        f"{list_name}:{term}"
        for list_name, terms in blocklists.items()
        for term in terms
        if _blocklist_term_pattern(term).search(normalized)
    )
    return list(dict.fromkeys(hits))


def _compile_claims(*phrases: str) -> re.Pattern[str]:
    return compile_phrase("|".join(f"(?:{phrase})" for phrase in phrases))


@dataclass(frozen=True)
class _Claim:
    """A kind of claim that is allowed only when the cited documents back it."""

    pattern: re.Pattern[str]
    # A deadline ("ends tonight") is also backed by a document that states its end date; counts
    # of stock or hours are backed only by a document that says exactly that.
    backed_by_end_date: bool = False


_MONTH = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
_DATE = rf"(?:\d{{4}}-\d{{2}}-\d{{2}}|\d{{1,2}}(?:st|nd|rd|th)? (?:of )?{_MONTH}|{_MONTH} \d{{1,2}}(?:st|nd|rd|th)?|\d{{1,2}}/\d{{1,2}}(?:/\d{{2,4}})?)"
# A deadline followed by its calendar date states a fact ("sale ends Sunday 12 May"), not pressure.
_NO_DATE_FOLLOWS = rf"(?![^.!?\n]{{0,30}}?(?:{_DATE}|christmas|new year)| before\b)"
_NUMBER = r"(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten|twelve|twenty-four|forty-eight|a few|a couple of)"
_WEEKDAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|weekend)"
_TIME_WORD = (rf"(?:{_WEEKDAY}|noon|midnight|sunrise|sunset|tonight|tomorrow|today|month|week|day|hour|\d{{1,2}}(?::\d\d)? ?(?:am|pm)"
              rf"|{_NUMBER} (?:hours?|days?|minutes?|weeks?))")
_GUARANTEE_CLAIMS = (
    _Claim(
        _compile_claims(  # longest forms first, so the phrase looked up in the source is the whole claim
            r"\d+ ?% satisfaction guaranteed(?: results)?",
            r"guaranteed (?:results|returns|income|profits?|weight loss|to \w+)",
            r"(?:\d+-(?:day|month|year) )?(?:money-back|money back|lifetime|price-match|price match|satisfaction|best-price|best price) guarantee",
            r"satisfaction guaranteed", r"guarantee[ds]?", r"risk-free", r"risk free", r"no risk",
            r"you will lose \d+ (?:pounds|lbs?|kg|kilos|kilograms|stone)",
            # Promises worded without "guarantee".
            r"(?:we|i) promise(?: you)?(?! (?:to )?(?:keep|protect|respect|reply|answer|never (?:share|sell|spam)|not (?:to )?(?:share|sell|spam)))", r"(?:results?|success|satisfaction) (?:is |are )?assured", r"assured",
            r"(?:you )?can(?:'t|not) lose", r"zero (?:risk|chance)", r"no (?:downside|way (?:\w+ ){0,4}?(?:fail|break|leak))",
            r"(?:will|'ll) never (?:fail|break|leak|wear out|let you down)", r"\d+ ?% (?:certain|sure|effective)", r"foolproof",
            r"unbreakable", r"(?:will|'ll) outlast you", r"(?:every|each) single (?:person|customer|buyer) (?:\w+ ){0,4}?loves?",
            r"(?:or|and) pay nothing", r"works every (?:single )?time", r"(?:or|and) we'll pay you", r"no matter what",
            r"you have our word", r"a sure thing", r"(?:money|cash) back twice", r"certain (?:success|results)",
            r"impossible to (?:be disappointed|fail|go wrong)", r"can't go wrong", r"nothing can go wrong",
            # Money back and absolute performance, worded without "guarantee".
            r"or (?:it's|it is|they're|the \w+ (?:is|are)|your \w+ (?:is|are)) free", r"or (?:we'll|we will) (?:refund|reimburse|replace|pay)",
            r"(?:full|100%) refund (?:anytime|any time|for any reason|forever|for life|no questions asked)",
            r"reimburse you in full", r"indestructible", r"(?:for|over) the (?:whole |entire )?life(?:time)? of (?:the|your|its)",
            r"outlasts? (?:its|their|your) owner", r"zero (?:delays|failures|defects)", r"(?:you )?(?:will|'ll) (?:definitely |certainly )?(?:catch|win|get|see) (?:more|better|results)",
        )
    ),
)
_URGENCY_CLAIMS = (
    _Claim(
        _compile_claims(  # stock levels and countdowns
            r"hurry,? only \d+(?: left| remaining)?", r"only \d+ (?:left|remaining)(?: in stock)?",
            r"only a few left", r"(?:almost|nearly) sold out", r"selling (?:out )?fast",
            r"only a (?:few|handful)(?: \w+)?(?: left| remain\w*)", r"only \d+ \w+ left", r"(?:supplies|stock) (?:is |are )?(?:extremely |very )?limited",
            r"someone else is about to (?:buy|grab|take)", r"(?:stock is |they're |it's |we're )?(?:almost|nearly) (?:gone|out)",
            r"(?:expires|ends|ending) in \d+ (?:hours?|hrs?|minutes?|mins?)",
            r"\d+ (?:hours?|hrs?|minutes?|mins?) (?:left|only|to go)", r"in the next \d+ (?:hours?|minutes?)",
        )
    ),
    _Claim(
        _compile_claims(
            r"last chance", r"(?:today|this weekend|one day|this day) only",
            r"(?:ends|ending) (?:tonight|today|at midnight|soon)", r"final (?:hours|day|days)",
            r"now or never",
            # Deadlines worded without a date: a document stating its end date backs them.
            r"act (?:now|fast|quickly)", r"hurry(?:,? (?:now|up|in|before|while))", r"don't (?:delay|miss out)", r"before (?:it's|they're|it is|they are) (?:gone|too late)",
            r"before (?:they|it) (?:vanish|disappear)\w*", r"time is running out", r"(?:the )?clock(?:'s| is) ticking",
            r"won't (?:be here|last) (?:long|tomorrow|much longer)", r"can't hold (?:these |this |our )?(?:prices?|offers?|deals?)",
            r"never again at this price", r"(?:expires?|ends?|closes?) (?:within|in) (?:the|an|one) (?:hour|day)",
            r"(?:any|at any) (?:second|minute|moment) now", r"\d+ (?:minutes?|mins?|hours?|hrs?|days?) (?:until|before|to claim|to go|left)",
            r"(?:disappears?|vanishes?|goes up|ends?|expires?) (?:at midnight|tonight|tomorrow|soon)", r"going,? going",
            r"(?:last|final) (?:call|few hours|moments)", r"(?:while|until) (?:stocks?|supplies) last",
            r"act immediately", r"blink and you(?:'ll)? miss it", r"(?:ends?|expires?|over) very soon", r"limited time",
            # A deadline: an ending verb, then a time ("closes in two days", "wraps up Sunday", "dies on Friday").
            rf"(?:ends?|expires?|closes?|runs? out|wraps? up|switches? off|dies|disappears?|evaporates?|vanish(?:es)?|self-destructs?)"
            rf" (?:(?:on|at|by|in|before|after|within|first thing|at the end of) )?(?:this |next |the )?{_TIME_WORD}{_NO_DATE_FOLLOWS}",
            rf"(?:book|order|buy|check out|shop|claim|redeem|use it|decide|grab \w+) (?:\w+ ){{0,4}}?within (?:the next )?{_NUMBER} (?:hours?|days?|minutes?)",
            rf"(?:by|before|until) (?:noon|midnight|{_WEEKDAY}|tonight|tomorrow){_NO_DATE_FOLLOWS}",
            r"(?:very |the )?(?:last|final) (?:day|days|unit|units|one|few|pair|pairs|notice|warning)\b",
            rf"(?:down to|fewer than|less than|under) (?:its |the |our |just |only )?(?:last|final|{_NUMBER})(?: \w+)? (?:left|remaining|units?|in stock|\w+ left)",
            r"(?:down to (?:its|the|our) (?:last|final))", r"(?:nearly|almost) (?:full|gone|sold out|booked)", r"(?:disappearing|going|selling) (?:fast|quickly)",
            r"won't last", r"use it or lose it", r"no extensions?", r"(?:straight )?back to full price",
            r"prices? (?:jumps?|go(?:es)?|rises?|increases?) (?:back )?up", r"(?:release|give) (?:your|the) reserved",
            r"about to miss (?:out|it)", r"quantities (?:are )?(?:strictly |very )?limited", r"(?:speed|time) matters", r"move (?:quickly|fast)",
            r"before the shelves are (?:empty|bare)", r"\d+ ?% (?:claimed|sold|gone)", r"low stock", r"while (?:you still can|it lasts)",
            r"(?:might|may|will) not be (?:available|here|around) (?:an hour|tomorrow|for long|much longer)",
        ),
        backed_by_end_date=True,
    ),
)
_END_DATE_STATEMENT = compile_phrase(
    r"(?:ends?|ending|until|till|through|thru|expires?|expiring|closes?|valid (?:until|through|to)"
    rf"|runs (?:until|through|to)|available (?:until|through)) (?:on )?(?:\w+day,? )?{_DATE}"
)
_DISEASES = (
    r"(?:cancer|diabetes|arthritis|diseases?|illness(?:es)?|depression|anxiety|asthma|covid|infections?"
    r"|insomnia|dementia|alzheimer's|high blood pressure|obesity|joint pain|back pain|chronic pain|sciatica|migraines?"
    r"|(?:the )?flu|colds?|cholesterol|eczema|fatigue|inflammation)"
)
_HEALTH_FINANCIAL_PROMISE = _compile_claims(
    rf"(?:cures?|cured|treats?|heals?|reverses?|prevents?) (?:\w+ ){{0,2}}?{_DISEASES}",
    r"miracle cure", r"clinically proven to", r"boosts? (?:your )?immun(?:e system|ity)",
    r"lose (?:weight|\d+ (?:pounds|lbs?|kg|kilos|kilograms|stone))", r"(?:burn|melt) (?:belly )?fat",
    r"get rich", r"guaranteed (?:returns|income|profits?)", r"double your money", r"financial freedom",
    r"passive income",
    r"(?:shed|drop|lose) \d+ ?(?:pounds|lbs?|kg|kilos|kilograms|stone)", r"reverses? (?:ageing|aging|\w+ damage|hair loss)",
    r"(?:regrows?|rebuilds?|restores?) (?:\w+ )?(?:cartilage|hair|bone|nerves?)", r"clears? (?:up )?(?:your )?acne",
    r"(?:melts?|burns?|blasts?) (?:away )?(?:belly |body )?fat", r"protects? (?:you )?(?:from|against) " + _DISEASES,
    r"heals? (?:\w+ ){0,2}?(?:pain|injur(?:y|ies)|damage)(?: for good)?", r"(?:become|make you) a millionaire",
    r"(?:grows?|gains?|returns?) \d+ ?% (?:in value )?(?:every|each|a|per) (?:day|week|month)", r"turn \$ ?\d[\d,]* into \$ ?\d[\d,]*",
    r"pays? (?:you )?\$ ?\d[\d,]*k? (?:a|per|every) (?:day|week|month|year)", r"drop (?:\w+ )?(?:dress |jean )?sizes",
    r"double your (?:savings|money|income|investment)", r"retire (?:early|rich)", r"quit your (?:day )?job",
    r"eliminates? (?:\w+ ){0,2}?(?:veins|wrinkles|cellulite|pain|fat|acne)", r"invest \$ ?\d[\d,]*k? (?:\w+ ){0,4}?(?:today|now)",
    r"(?:earn|make) (?:\$ ?\d[\d,]*k?|money|cash|thousands) (?:\w+ ){0,3}?from home",
    # "Earn $10 in store credit" is a loyalty reward, not an income promise. The atomic group
    # stops the amount from being shortened to dodge the look-ahead.
    r"earn (?:up to )?(?>\$ ?\d[\d,]*(?:\.\d+)?k?)(?! (?:in )?(?:store |reward |bonus )?(?:credit|rewards?|points|off|back|vouchers?|gift cards?))",
    r"make (?:up to )?\$ ?\d[\d,]*k? (?:a|per|every) (?:day|week|month|hour)",
    rf"(?:ends?|stops?|ends? your|reduces? (?:your )?risk of|won't (?:catch|get)|never (?:catch|get)) {_DISEASES}",
    rf"{_DISEASES} (?:drops?|falls?|disappears?|vanish(?:es)?|goes? away)", r"lowers? (?:your )?cholesterol",
    r"(?:weight|fat|pounds|kilos) (?:falls?|melts?|drops?) off", r"resets? your metabolism",
    r"pay (?:off|down) (?:your |all your )?(?:debts?|mortgage|loans?|credit cards?)", r"wipes? out (?:your )?(?:\w+ ){0,2}?(?:balance|debts?)",
    r"build (?:real |lasting |serious )?wealth", r"nest egg", r"(?:made|make|earn(?:ed)?) (?:back )?(?:thousands|millions|a fortune)",
    r"(?:earn|make)s? (?:back )?(?:\w+ ){0,3}?(?:ten|five|\d+) times over", r"side income", r"(?:grow|grows) in value",
)
_PLACEHOLDER_PATTERNS = (
    # [Your Company Name], [Name]: letters only, so "[DOC-001]" ids and "[Shop](url)" links pass.
    re.compile(r"\[[A-Za-z][A-Za-z .'/&_-]{0,40}\](?!\()"),
    re.compile(r"<\s*(?:[A-Z][A-Z0-9_]{2,}(?: [A-Z0-9_]+)*|(?i:insert|your)\b[^<>]{0,40})\s*>"),  # <FIRST NAME>
    re.compile(r"\binsert\b[^.\n]{0,40}?\bhere\b", re.IGNORECASE),
    re.compile(r"\blorem ipsum\b", re.IGNORECASE),
    re.compile(r"\b(?:TODO|TBD|FIXME)\b"),
    re.compile(r"(?<!\{)\{[A-Za-z_]\w*\}(?!\})"),  # a str.format field nobody filled
    re.compile(r"%\(\w+\)s"),
    re.compile(r"%[A-Za-z_]{3,}%|\*\|[A-Za-z_]+\|\*|#[A-Z_]{3,}#|\$[A-Z_]{3,}\$"),  # %FIRSTNAME%, *|FNAME|*, #NAME#, $NAME$
    re.compile(r"<<\s*[^<>]{1,40}\s*>>|\[\[[^\]]{1,40}\]\]"),  # <<Customer>>, [[Name]]
    re.compile(r"\((?:your|insert|customer|first|company|recipient)'?s? [^()]{0,30}\)", re.IGNORECASE),  # (Your Name Here)
    re.compile(r"\bX{3,}\b|\*{3}[^*]{1,40}\*{3}"),  # XXXX, ***INSERT OFFER***
    # Other template languages' fields: ((first_name)), {0}, %s, @@USERNAME@@, @name@, |FNAME|, <%= user.name %>.
    re.compile(r"\(\(\s*\w[\w .]{0,30}\)\)|(?<![\w{])\{\d+\}|(?<![\w%])%[sd](?!\w)|@@\w+@@|(?<![\w.])@[a-z_]+@(?![\w.])"),
    re.compile(r"(?<![\w|*])\|[A-Z_]{2,}\|(?!\*)|<%=?[^%]{0,60}%>"),
    # Blanks and field names: "Hi ____", __SHOE_SIZE__, CUSTOMER_NAME, PLACEHOLDER, INSERT PROMO CODE.
    re.compile(r"_{3,}|__[A-Za-z]\w*?__|\b[A-Z]{2,}(?:_[A-Z0-9]+)+\b|\bPLACEHOLDER\b|\bINSERT(?: [A-Z]{2,})+\b"),
    # {customer.name}, $name$, $XX, XX% and field names written as one capitalised word.
    re.compile(r"(?<!\{)\{[A-Za-z_]\w*(?:\.\w+)+\}(?!\})|\$[A-Za-z_]{3,}\$|\$XX\b|\bXX ?%"
               r"|\b(?:FIRSTNAME|LASTNAME|FULLNAME|FNAME|LNAME|USERNAME|CUSTOMERNAME|EMAILADDRESS)\b"),
)
_MERGE_FIELD = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
ALLOWED_MERGE_FIELDS = frozenset(MERGE_FIELDS)
_URL = re.compile(r"""\b(?:https?|ftp)://[^\s<>"'()\[\]{}]+|\bwww\.[^\s<>"'()\[\]{}]+""", re.IGNORECASE)
# A link without a scheme: a bare domain ("shop-deals.biz/offer", "tinyurl.com/x8k2"), an IP
# address, or a domain spelled out ("gearhub dot com"). Top-level domains are listed, so
# "1.6 kg" or "e.g." never read as one.
_TLDS = (r"com|net|org|info|biz|io|co|ly|me|ru|cn|uk|de|fr|nl|eu|us|ca|au|in|xyz|top|online|site|shop|store|link|click|app"
         r"|example|gl|to|gd|cc|tv|ws|club|live|deals|sale|world|email|fishing|id|at|ai|gg|sh|so|be|ch|se|no|dk|fi|pl|es|it"
         r"|pt|nz|ie|jp|br|mx|za|sg|hk|tk|ml|ga|cf|pw|su|ua|ro|cz|gr|tr|ae|travel|tech|pro|space|website|fun|guru|life"
         r"|today|tips|news|blog|page|one|zone|camp|run|bike|ski|fit|team|land|earth|global|group|media|digital|studio"
         r"|design|works|tools|supply|market|money|cash|bet|win|vip|promo|coupon|codes|gift|gifts|fyi|outdoors?|gear|fm|eco|am"
         r"|bio|cafe|health|fitness|golf|coach|events|tickets|tours|yoga|surf|dev|cloud|host|stream|video|tube")
_DOMAIN_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_BARE_LINK = re.compile(
    rf"\b(?:{_DOMAIN_LABEL}\.)+(?:{_TLDS})\b(?:/[^\s<>\"'()\[\]{{}}]*)?"
    # Any top-level domain when a path follows ("lakeside-gear.fishing/rods") or the host has
    # three labels of two letters or more ("stockists.gearmap.world").
    rf"|\b(?:{_DOMAIN_LABEL}\.)+[a-z]{{2,}}/[^\s<>\"'()\[\]{{}}]*|\b(?:[a-z0-9-]{{2,}}\.){{2,}}[a-z]{{2,}}\b"
    r"|\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?(?:/\S*)?"
    r"|\bh ?t ?t ?p ?s? ?: ?/ ?/|\bw ?w ?w ?\. ?\w"  # a scheme or "www." spelled apart: "h t t p s : / /", "w w w . g e a r"
    rf"|\b[a-z0-9-]+ ?(?:\(dot\)|\[dot\]| dot ) ?(?:{_TLDS})\b"
    rf"|\bw ?w ?w ?\. ?[a-z0-9-]+ ?\. ?(?:{_TLDS})\b",
    re.IGNORECASE,
)

# A "defanged" dot, as in "northwind[.]deals": the link is still a link to a reader.
_DEFANGED_DOT = re.compile(r" ?(?:\[\.\]|\(\.\)|\{\.\}) ?")


def find_urls(text: str) -> list[str]:
    """Every link in the text, without trailing sentence punctuation: http(s) URLs, bare www.
    domains, and links without a scheme (bare domains, IP addresses, spelled-out domains)."""
    text = _DEFANGED_DOT.sub(".", text)
    found = [match.group(0).rstrip(".,;:!?") for match in _URL.finditer(text)]
    rest = _URL.sub(" ", text)
    return found + [match.group(0).rstrip(".,;:!?") for match in _BARE_LINK.finditer(rest)]


def find_placeholders(text: str) -> list[str]:
    """Template leftovers a customer must never see; the allowed merge fields are not among them."""
    found = [m.group(0) for pattern in _PLACEHOLDER_PATTERNS for m in pattern.finditer(text)]
    found += [m.group(0) for m in _MERGE_FIELD.finditer(text) if m.group(1) not in ALLOWED_MERGE_FIELDS]
    return found


@dataclass(frozen=True)
class _Draft:
    """What the compliance rules look at for one variant."""

    raw_text: str  # subject and body as written: URLs are compared exactly
    text: str  # normalized, for phrase patterns
    source: str  # the cited documents' text, in `comparable` form
    source_states_end_date: bool
    approved_urls: frozenset[str]
    citations: tuple[str, ...]
    retrieved_ids: frozenset[str]
    claims: frozenset[str]  # the claim classifier's rules for the subject and body (`safety/claims.py`)
    source_claims: frozenset[str]  # ... and for the cited documents' text


def _has_unbacked_claim(claims: Iterable[_Claim], draft: _Draft) -> bool:
    return any(
        comparable(match.group(0)) not in draft.source
        and not (claim.backed_by_end_date and draft.source_states_end_date)
        for claim in claims
        for match in claim.pattern.finditer(draft.text)
    )


def _has_unbacked_classified_claim(rule_id: str, draft: _Draft, *, backed_by_end_date: bool = False) -> bool:
    """A claim the classifier found has no phrase to look up in the documents, so it is backed by
    documents that make a claim of the same kind themselves (the classifier finds it in one of
    their sentences), or, for urgency, by documents that state an end date."""
    return rule_id in draft.claims and rule_id not in draft.source_claims and not (
        backed_by_end_date and draft.source_states_end_date)


def _makes_promise(normalized: str, claims: frozenset[str]) -> bool:
    """A health or financial promise: a phrase of the table, or one the claim classifier read."""
    return _HEALTH_FINANCIAL_PROMISE.search(normalized) is not None or "health_financial_promise" in claims


_COMPLIANCE_RULES: dict[str, Callable[[_Draft], bool]] = {
    "unverifiable_guarantee": lambda d: (_has_unbacked_claim(_GUARANTEE_CLAIMS, d)
                                         or _has_unbacked_classified_claim("unverifiable_guarantee", d)),
    "false_urgency": lambda d: (_has_unbacked_claim(_URGENCY_CLAIMS, d)
                                or _has_unbacked_classified_claim("false_urgency", d, backed_by_end_date=True)),
    "health_financial_promise": lambda d: _makes_promise(d.text, d.claims),
    "unresolved_placeholder": lambda d: bool(find_placeholders(d.text)),
    "unapproved_url": lambda d: any(url not in d.approved_urls for url in find_urls(d.raw_text)),
    "citation_not_retrieved": lambda d: any(doc_id not in d.retrieved_ids for doc_id in d.citations),
    "missing_citation": lambda d: not d.citations,
}
COMPLIANCE_RULE_IDS = tuple(sorted([*_COMPLIANCE_RULES, *UNSAFE_TEXT_PATTERNS]))


def find_compliance_hits(
    subject: str,
    body: str,
    *,
    approved_urls: Collection[str],
    citations: Collection[str],
    retrieved_ids: Collection[str],
    source_text: str,
) -> list[str]:
    """Sorted ids of the marketing compliance rules the variant breaks.

    `source_text` is the text of the cited approved documents: a guarantee or urgency claim is
    allowed when those documents make it themselves.
    """
    raw_text = f"{subject}\n{body}"
    claims, source_claims = claims_in([raw_text, source_text])
    draft = _Draft(
        raw_text=raw_text,
        text=normalize(raw_text),
        source=comparable(source_text),
        source_states_end_date=_END_DATE_STATEMENT.search(normalize(source_text)) is not None,
        approved_urls=frozenset(approved_urls),
        citations=tuple(citations),
        retrieved_ids=frozenset(retrieved_ids),
        claims=claims,
        source_claims=source_claims,
    )
    hits = [rule_id for rule_id, is_broken in _COMPLIANCE_RULES.items() if is_broken(draft)]
    # Markup, control or bidi characters and template syntax, on the text as written: a variant's
    # own merge fields are its only template syntax.
    return sorted(hits + unsafe_text_kinds(raw_text, allowed_merge_fields=tuple(ALLOWED_MERGE_FIELDS)))


def find_source_hits(text: str) -> list[str]:
    """The rules a source document's text breaks (`safety/documents.py`): health or financial
    promises, template leftovers, and text that must never reach an email (markup, control and
    bidi characters, template syntax: none allowed, not even a merge field)."""
    normalized = normalize(text)
    hits = ["health_financial_promise"] if _makes_promise(normalized, claims_in([text])[0]) else []
    hits += ["unresolved_placeholder"] if find_placeholders(normalized) else []
    return sorted(hits + unsafe_text_kinds(text))
