"""The experiments table: all key handling lives here.

Every single-item read or write uses the full composite key (experiment_id + timestamp),
carried by ExperimentKey, the only way to address an item. Updates are conditional:
the item must exist (no update ever creates one) and its status must be one from which
the change is allowed, so a final status is permanent. A lookup by id alone is a Query.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypedDict

import boto3
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from codeclab.experiments.ids import is_experiment_id
from codeclab.experiments.record import ExperimentRecord, PointStatus
from codeclab.experiments.statuses import Status, TransitionError, sources_of

STATUS_INDEX = "by_status"
PARENT_INDEX = "by_parent"  # a sweep's points: partition parent_id, sort point_index


class DynamoKey(TypedDict):
    experiment_id: str
    timestamp: int


class PageKey(DynamoKey):
    """Where a page of the status index ended: the table's key and the index's."""

    status: str


class ExperimentNotFound(LookupError):
    """No item has this key; nothing was written."""


@dataclass(frozen=True)
class ExperimentKey:
    """The composite key. Both parts are required; there is no way to build half of one."""

    experiment_id: str
    timestamp: int

    def __post_init__(self) -> None:
        if not is_experiment_id(self.experiment_id):
            raise ValueError(f"not an experiment id: {self.experiment_id!r} (expected exp_ + 26-char ULID)")
        if not isinstance(self.timestamp, int) or isinstance(self.timestamp, bool) or self.timestamp <= 0:
            raise ValueError(f"timestamp must be a positive integer of epoch ms, got {self.timestamp!r}")

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> ExperimentKey:
        """Build from any mapping that carries both keys (an item, an event, a state's output)."""
        try:
            return cls(data["experiment_id"], int(data["timestamp"]))
        except KeyError as missing:
            raise ValueError(f"both experiment_id and timestamp are needed; {missing} is missing") from None

    def dynamo_key(self) -> DynamoKey:
        return {"experiment_id": self.experiment_id, "timestamp": self.timestamp}

    def __str__(self) -> str:
        return f"{self.experiment_id}@{self.timestamp}"


def to_dynamo(value: Any) -> Any:
    """JSON-like data as DynamoDB wants it (floats become Decimal)."""
    return json.loads(json.dumps(value), parse_float=Decimal)


def from_dynamo(value: Any) -> Any:
    """DynamoDB data back to plain JSON types (Decimal becomes int or float)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    return value


class ExperimentStore:
    def __init__(self, table_name: str, clock: Callable[[], float] = time.time) -> None:
        self.table = boto3.resource("dynamodb").Table(table_name)
        self._clock = clock

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def create(self, experiment_id: str, spec: object, **attributes: Any) -> tuple[ExperimentKey, bool]:
        """Put a QUEUED item unless one with this id exists; returns (key, created)."""
        existing = self.find(experiment_id)
        if existing is not None:
            return ExperimentKey.of(existing), False
        key = ExperimentKey(experiment_id, self.now_ms())
        item = {
            **key.dynamo_key(),
            "status": Status.QUEUED.value,
            "spec": spec,
            "history": [{"status": Status.QUEUED.value, "at": key.timestamp}],
            "updated_at": key.timestamp,
            **attributes,
        }
        try:
            self.table.put_item(Item=to_dynamo(item), ConditionExpression="attribute_not_exists(experiment_id)")
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise
            return ExperimentKey.of(self.find(experiment_id) or item), False  # lost a race: same outcome
        return key, True

    def get(self, key: ExperimentKey) -> ExperimentRecord | None:
        response = self.table.get_item(Key=key.dynamo_key(), ConsistentRead=True)
        return from_dynamo(response["Item"]) if "Item" in response else None

    def find(self, experiment_id: str) -> ExperimentRecord | None:
        """The item for an id, by a Query on the partition key (the newest if ever several)."""
        if not is_experiment_id(experiment_id):
            return None
        response = self.table.query(
            KeyConditionExpression=Key("experiment_id").eq(experiment_id),
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,  # a write a moment ago (a point's record) must be found
        )
        items = response.get("Items", [])
        return from_dynamo(items[0]) if items else None

    def transition(self, key: ExperimentKey, target: Status, **attributes: Any) -> ExperimentRecord:
        """Move to `target` and set attributes, atomically, only from an allowed status."""
        now = self.now_ms()
        names = {"#status": "status", "#history": "history", "#updated": "updated_at"}
        values: dict[str, Any] = {
            ":target": target.value,
            ":entry": [{"status": target.value, "at": now}],
            ":empty": [],
            ":now": now,
        }
        sets = [
            "#status = :target",
            "#history = list_append(if_not_exists(#history, :empty), :entry)",
            "#updated = :now",
        ]
        for index, (name, value) in enumerate(sorted(attributes.items())):
            names[f"#a{index}"], values[f":a{index}"] = name, value
            sets.append(f"#a{index} = :a{index}")
        allowed = sources_of(target)
        if not allowed:
            raise ValueError(f"no status leads to {target}; create() makes new items")
        for index, source in enumerate(allowed):
            values[f":s{index}"] = source.value
        condition = (
            f"attribute_exists(experiment_id) AND #status IN ({', '.join(f':s{i}' for i in range(len(allowed)))})"
        )
        return self._update(key, target, "SET " + ", ".join(sets), condition, names, values)

    def set_progress(self, key: ExperimentKey, stage: str, frames_done: int, frames_total: int) -> None:
        """Record progress; ignored once the experiment is final (late reports change nothing)."""
        progress = {
            "stage": stage,
            "frames_done": frames_done,
            "frames_total": frames_total,
            "updated_at": self.now_ms(),
        }
        final = [s.value for s in Status if s.is_final]
        values = {":p": progress, **{f":f{i}": s for i, s in enumerate(final)}}
        condition = (
            f"attribute_exists(experiment_id) AND NOT #status IN ({', '.join(f':f{i}' for i in range(len(final)))})"
        )
        try:
            self.table.update_item(
                Key=key.dynamo_key(),
                UpdateExpression="SET progress = :p",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_dynamo(values),
            )
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise

    def list_by_status(
        self, status: Status, limit: int = 50, start: PageKey | None = None
    ) -> tuple[list[ExperimentRecord], PageKey | None]:
        """One page of experiments in a status, newest first, through the status GSI."""
        query: dict[str, Any] = {
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": Key("status").eq(status.value),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if start:
            query["ExclusiveStartKey"] = to_dynamo(start)
        response = self.table.query(**query)
        last = response.get("LastEvaluatedKey")
        return [from_dynamo(i) for i in response.get("Items", [])], from_dynamo(last) if last else None

    def points_of(self, parent_id: str, first: int = 0, last: int | None = None) -> Iterator[ExperimentRecord]:
        """A sweep's point records with first <= point_index <= last, in index order, through the parent GSI.

        The index is eventually consistent: a point written a moment ago may be missing or show an older status,
        so whoever finalises from it re-reads the table (ExperimentStore.get) before it decides.
        """
        condition = Key("parent_id").eq(parent_id) & (
            Key("point_index").gte(first) if last is None else Key("point_index").between(first, last)
        )
        return self._pages({"IndexName": PARENT_INDEX, "KeyConditionExpression": condition})

    def point_statuses(self, parent_id: str) -> Iterator[PointStatus]:
        """points_of, projected to what progress needs: polled every second, a sweep's full items would be
        megabytes a poll for 10,000 points."""
        condition = Key("parent_id").eq(parent_id)
        names = {f"#{name}": name for name in PointStatus.__annotations__}
        return self._pages({"IndexName": PARENT_INDEX, "KeyConditionExpression": condition,
                            "ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names})  # fmt: skip

    def _pages(self, query: dict[str, Any]) -> Iterator[Any]:
        """Every item a query finds, page after page."""
        while True:
            response = self.table.query(**query)
            yield from (from_dynamo(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return
            query = {**query, "ExclusiveStartKey": response["LastEvaluatedKey"]}

    def _update(
        self,
        key: ExperimentKey,
        target: Status,
        expression: str,
        condition: str,
        names: dict[str, str],
        values: dict[str, Any],
    ) -> ExperimentRecord:
        try:
            response = self.table.update_item(
                Key=key.dynamo_key(),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_dynamo(values),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise
            current = self.get(key)
            if current is None:
                raise ExperimentNotFound(
                    f"no experiment {key}: nothing was written. Look the key up with find(experiment_id)"
                ) from None
            raise TransitionError(key.experiment_id, Status(current["status"]), target) from None
        return from_dynamo(response["Attributes"])


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
