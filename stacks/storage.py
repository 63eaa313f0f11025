"""The experiment table and the artifact store."""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from codeclab.experiments.codec_package import CODECS_PREFIX
from stacks.nag import acknowledge, resource_finding

# Every Batch job writes under experiments/<experiment_id>/; roles are scoped to this prefix.
EXPERIMENTS_PREFIX = "experiments/"
# Clips, test-set folders and manifests uploaded for experiments: read by the API, CreateRecord and jobs.
INPUTS_PREFIX = "inputs/"
STATUS_INDEX = "by_status"
PARENT_INDEX = "by_parent"


class Storage(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, table_name: str | None) -> None:
        super().__init__(scope, construct_id)
        self.table = self._table(table_name)
        self.logs_bucket = self._logs_bucket()
        self.bucket = s3.Bucket(
            self,
            "Artifacts",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=False,  # results are written once; a rerun is a new experiment id
            server_access_logs_bucket=self.logs_bucket,
            server_access_logs_prefix="artifacts/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="experiments-to-infrequent-access",
                    prefix=EXPERIMENTS_PREFIX,
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS, transition_after=Duration.days(30)
                        )
                    ],
                ),
                s3.LifecycleRule(
                    id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(7)
                ),
            ],
        )
        acknowledge(
            Stack.of(self),
            "IAM5",
            "Jobs and Lambdas touch only keys under experiments/<experiment_id>/, and the experiment id is "
            "minted at run time, so the narrowest deploy-time scope is the experiments/ prefix of this one bucket.",
            finding=resource_finding(self, self.experiments_objects),
        )

        acknowledge(
            Stack.of(self),
            "IAM5",
            "Inputs (clips, test-set folders, manifests) are uploaded by researchers under any key below inputs/; "
            "readers get GetObject on that prefix of this one bucket and nothing else.",
            finding=resource_finding(self, self.inputs_objects),
        )

        acknowledge(
            Stack.of(self),
            "IAM5",
            "Codec packages (.tar.gz) are uploaded by researchers under any key below codecs/; the API and "
            "CreateRecord read their codec.json and jobs download them, with GetObject on that prefix only.",
            finding=resource_finding(self, self.codecs_objects),
        )

    @property
    def experiments_objects(self) -> str:
        return self.bucket.arn_for_objects(f"{EXPERIMENTS_PREFIX}*")

    @property
    def inputs_objects(self) -> str:
        return self.bucket.arn_for_objects(f"{INPUTS_PREFIX}*")

    def grant_inputs(self, grantee: iam.IGrantable) -> None:
        """Read clips and test sets under inputs/, and list that prefix (a test set may be a folder)."""
        principal = grantee.grant_principal
        principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[self.inputs_objects])
        )
        principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{INPUTS_PREFIX}*"]}},
            )
        )

    @property
    def codecs_objects(self) -> str:
        return self.bucket.arn_for_objects(CODECS_PREFIX + "*")

    def grant_codecs(self, grantee: iam.IGrantable) -> None:
        """Read codec packages under codecs/ (the API and CreateRecord check their params; jobs run them)."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[self.codecs_objects])
        )

    def grant_objects(self, grantee: iam.IGrantable, *actions: str) -> None:
        """Object actions under experiments/ only."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=list(actions), resources=[self.experiments_objects])
        )
        if "s3:GetObject" in actions:
            # Without ListBucket, S3 answers 403 instead of 404 for a missing object (a job that wrote no
            # result.json), and the handlers tell those apart. No s3:prefix condition: a GET carries none.
            grantee.grant_principal.add_to_principal_policy(
                iam.PolicyStatement(actions=["s3:ListBucket"], resources=[self.bucket.bucket_arn])
            )

    def grant_table(
        self, grantee: iam.IGrantable, *actions: str, status_index: bool = False, parent_index: bool = False
    ) -> None:
        """Item actions on the table, and on the by_status and by_parent indexes when asked."""
        resources = [self.table.table_arn]
        if status_index:
            resources.append(f"{self.table.table_arn}/index/{STATUS_INDEX}")
        if parent_index:
            resources.append(f"{self.table.table_arn}/index/{PARENT_INDEX}")
        grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(actions=list(actions), resources=resources))

    def _table(self, table_name: str | None) -> dynamodb.Table:
        table = dynamodb.Table(
            self,
            "Experiments",
            table_name=table_name,
            partition_key=dynamodb.Attribute(name="experiment_id", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="timestamp", type=dynamodb.AttributeType.NUMBER),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
        )
        table.add_global_secondary_index(
            index_name=STATUS_INDEX,
            partition_key=dynamodb.Attribute(name="status", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="timestamp", type=dynamodb.AttributeType.NUMBER),
        )
        # A sweep's points, in order: what aggregation, the finalisers and `status` query instead of a list on
        # the parent (whose item would pass DynamoDB's 400 KB limit, and become a hot key if it counted).
        table.add_global_secondary_index(
            index_name=PARENT_INDEX,
            partition_key=dynamodb.Attribute(name="parent_id", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="point_index", type=dynamodb.AttributeType.NUMBER),
        )
        return table

    def _logs_bucket(self) -> s3.Bucket:
        # cdk-nag's S1 exempts a bucket that receives access logs, so this one logs nowhere itself.
        return s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # S3 server access logging delivers only to SSE-S3 buckets
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=Duration.days(365))],
        )
