"""The agent registry: enrolment tokens, enrolment, credentials, groups, status and tasks.

Callers use this package as one service (`from puffin.endpoint import service as
endpoint_service`); its modules split it by concept.
"""

from __future__ import annotations

from puffin.endpoint.service.agents import (
    DISCONNECTED_AFTER,
    REENROL_TOKEN_HOURS,
    Contact,
    authenticate_agent,
    delete_agent,
    enroll,
    get_agent,
    list_agents,
    record_contact,
    record_contacts,
    record_deliveries,
    reenroll_agent,
    revoke_agent,
    source_for,
    source_name,
    status_of,
    store_inventory,
    update_agent,
)
from puffin.endpoint.service.groups import (
    config_hash,
    effective_config,
    list_groups,
    put_group,
)
from puffin.endpoint.service.tasks import (
    agent_spelling,
    create_task,
    finish_task,
    list_tasks,
    take_pending_tasks,
)
from puffin.endpoint.service.tokens import (
    TOKEN_PREFIX,
    create_enrollment_token,
    enrol_command,
    find_enrollment_token,
    list_enrollment_tokens,
    revoke_enrollment_token,
)

__all__ = [
    "DISCONNECTED_AFTER",
    "REENROL_TOKEN_HOURS",
    "TOKEN_PREFIX",
    "Contact",
    "agent_spelling",
    "authenticate_agent",
    "config_hash",
    "create_enrollment_token",
    "create_task",
    "delete_agent",
    "effective_config",
    "enrol_command",
    "enroll",
    "find_enrollment_token",
    "finish_task",
    "get_agent",
    "list_agents",
    "list_enrollment_tokens",
    "list_groups",
    "list_tasks",
    "put_group",
    "record_contact",
    "record_contacts",
    "record_deliveries",
    "reenroll_agent",
    "revoke_agent",
    "revoke_enrollment_token",
    "source_for",
    "source_name",
    "status_of",
    "store_inventory",
    "take_pending_tasks",
    "update_agent",
]
