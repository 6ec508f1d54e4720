"""The audit benchmark's local-stack mode at a tiny size: it still runs, and the API answers as the
in-memory table does. Correctness only; the benchmark's figures are never asserted."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from accessctl.audit_query import iso as instant
from bench.audit_bench import SEED, Question, generate, run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RECORDS = 200


def _questions_about_grants(count: int) -> list[Question]:
    """Two-hour windows starting an hour before some of the generated grants, so answers are not empty."""
    chained, _ = generate(RECORDS, random.Random(SEED))
    issued = [record for record in chained if record["event_type"] == "GRANT_ISSUED"][:count]
    questions = []
    for record in issued:
        start = datetime.fromisoformat(record["at"].replace("Z", "+00:00")) - timedelta(hours=1)
        questions.append(Question(record["database"], instant(start), instant(start + timedelta(hours=2))))
    return questions


@pytest.mark.timeout(300)
@pytest.mark.parametrize("verify_api", [False, True], ids=["verify-in-process", "verify-through-the-api"])
def test_given_a_small_chained_log_when_benchmarked_on_the_local_stack_then_it_answers_as_in_memory(
    verify_api: bool,
) -> None:
    # Given 200 chained records and three questions whose windows hold a grant
    questions = _questions_about_grants(3)

    # When both places are measured
    result = run(RECORDS, len(questions), emulator=True, verify_api=verify_api, verify_timeout=240, questions=questions)

    # Then GET /audit/access gave the in-memory answers, none of them empty
    memory, stack = result.places["in memory"], result.places["local stack"]
    assert stack.answers == memory.answers
    assert all(memory.answers)
    # And the chain loaded into the deployed AuditTable verifies, every record walked, by the chosen path
    assert memory.verify_ok and stack.verify_ok
    assert stack.verify_records == memory.verify_records == RECORDS
    assert stack.verify_streams == memory.verify_streams == result.streams
    assert stack.verify_how == ("POST /audit/verifications" if verify_api else "accessctl.audit.verify")
