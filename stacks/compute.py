"""The GPU side: a VPC, a managed EC2 Batch compute environment of g5/g6 instances, its queue and job definition."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import cast

from aws_cdk import CfnResource, Duration, IgnoreMode, Size
from aws_cdk import aws_batch as batch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from codeclab.experiments.error_types import HOST_LOST_PREFIX
from codeclab.experiments.limits import JOB_ATTEMPTS
from codeclab.experiments.progress import PROGRESS_TABLE_ENV
from codeclab.worker.sandbox.layers import MIB, SCRATCH_BYTES, SCRATCH_ROOT_ENV
from stacks.logs import EncryptedLogs
from stacks.nag import acknowledge
from stacks.settings import JOB_VCPUS, Settings
from stacks.storage import Storage

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = "gpu_container/Dockerfile"
INSTANCE_TYPES = ("g5.xlarge", "g5.2xlarge", "g6.xlarge", "g6.2xlarge")
# g5.xlarge and g6.xlarge have 16 GiB; the OS and the ECS agent keep a little under 1 GiB of it,
# so 14 GiB still lets a job fit the smallest instance.
JOB_MEMORY = Size.gibibytes(14)
# Batch sets this status reason when the instance under a job goes away, Spot reclamation included.
HOST_LOST_REASON = f"{HOST_LOST_PREFIX}*"
SANDBOX_SCRATCH = "/sandbox"


class GpuBatch(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, settings: Settings, storage: Storage, logs: EncryptedLogs
    ) -> None:
        super().__init__(scope, construct_id)
        self.vpc = self._vpc(storage.logs_bucket)
        self.compute_environment = self._compute_environment(settings)
        self.queue = batch.JobQueue(
            self,
            "Queue",
            compute_environments=[
                batch.OrderedComputeEnvironment(compute_environment=self.compute_environment, order=1)
            ],
            # Batch fires these only for a job blocked by one of its own reasons (rendered with their category:
            # CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY, MISCONFIGURATION:...), so a free-text reason would never
            # match. The cancelled job's status reason then names that reason, which the error classifier reads.
            job_state_time_limit_actions=[
                batch.JobStateTimeLimitAction(
                    max_time=Duration.seconds(settings.runnable_timeout_seconds),
                    reason=reason,
                    action=batch.JobStateTimeLimitActionsAction.CANCEL,
                    state=batch.JobStateTimeLimitActionsState.RUNNABLE,
                )
                for reason in batch.JobStateTimeLimitActionsReason
            ],
        )
        self.job_role = iam.Role(
            self,
            "JobRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="codeclab worker: its experiment's artifacts and item, nothing else",
        )
        storage.grant_objects(self.job_role, "s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload")
        storage.grant_inputs(self.job_role)  # the clips
        storage.grant_codecs(self.job_role)  # codec packages
        storage.grant_table(self.job_role, "dynamodb:GetItem", "dynamodb:UpdateItem")
        self.job_definition = self._job_definition(settings, storage, logs)

    def _vpc(self, flow_log_bucket: s3.IBucket) -> ec2.Vpc:
        # Public subnets only, no NAT gateway: instances get public IPs and reach ECR, ECS, CloudWatch and
        # Batch directly. No inbound rule exists anywhere, and a NAT gateway would cost more per month than
        # a typical sweep, plus per-GB charges on every multi-GB CUDA image pull.
        vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24)
            ],
            # S3 and DynamoDB traffic (artifacts, records) stays on the AWS network, free of charge.
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
                "DynamoDB": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.DYNAMODB),
            },
        )
        vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_s3(flow_log_bucket, "vpc-flow-logs/"),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
        return vpc

    def _compute_environment(self, settings: Settings) -> batch.ManagedEc2EcsComputeEnvironment:
        security_group = ec2.SecurityGroup(
            self,
            "InstanceSecurityGroup",
            vpc=self.vpc,
            description="codeclab GPU instances: no inbound traffic, outbound to AWS APIs and image registries",
            allow_all_outbound=True,
        )
        launch_template = self._launch_template()
        environment = batch.ManagedEc2EcsComputeEnvironment(
            self,
            "GpuEnvironment",
            vpc=self.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_groups=[security_group],
            instance_types=[ec2.InstanceType(name) for name in INSTANCE_TYPES],
            use_optimal_instance_classes=False,
            images=[batch.EcsMachineImage(image_type=batch.EcsMachineImageType.ECS_AL2023_NVIDIA)],
            minv_cpus=0,
            maxv_cpus=settings.max_vcpus,
            spot=settings.use_spot,
            allocation_strategy=(
                batch.AllocationStrategy.SPOT_PRICE_CAPACITY_OPTIMIZED
                if settings.use_spot
                else batch.AllocationStrategy.BEST_FIT_PROGRESSIVE
            ),
            launch_template=launch_template,
        )
        # Pin the template's latest version: with the implicit $Default, an edited template would not reach
        # instances until the compute environment changed for some other reason.
        cast(CfnResource, environment.node.default_child).add_property_override(
            "ComputeResources.LaunchTemplate.Version", launch_template.latest_version_number
        )
        acknowledge(
            environment,
            "IAM4",
            "AmazonEC2ContainerServiceforEC2Role is the documented instance role policy for ECS container "
            "instances: the ECS agent on each GPU instance needs it to register with the cluster Batch manages "
            "and to pull the worker image; jobs never see this role (IMDS is blocked for containers).",
            finding="Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role",
        )
        return environment

    def _launch_template(self) -> ec2.LaunchTemplate:
        # IMDS blocking: IMDSv2 only, with a PUT response hop limit of 1. Batch runs EC2 jobs in bridge network
        # mode, one hop behind the host, so the worker (and any user codec code) cannot get an IMDS token and
        # never sees the instance role. ECS_AWSVPC_BLOCK_IMDS would not help: it covers awsvpc mode only.
        # The job's own credentials come from the ECS agent's endpoint, which the hop limit does not affect.
        return ec2.LaunchTemplate(
            self,
            "InstanceTemplate",
            http_endpoint=True,
            http_tokens=ec2.LaunchTemplateHttpTokens.REQUIRED,
            http_put_response_hop_limit=1,
            block_devices=[
                ec2.BlockDevice(
                    # Room for the CUDA image (several GB) and the clips and reconstructions a job writes.
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(100, encrypted=True, volume_type=ec2.EbsDeviceVolumeType.GP3),
                )
            ],
        )

    def _sandbox_scratch(self) -> batch.LinuxParameters:
        """A size-capped tmpfs for custom-codec children: Docker's default seccomp profile lets them mount none."""
        parameters = batch.LinuxParameters(self, "WorkerLinuxParameters")
        parameters.add_tmpfs(
            batch.Tmpfs(
                container_path=SANDBOX_SCRATCH,
                size=Size.mebibytes(SCRATCH_BYTES // MIB),
                mount_options=[
                    batch.TmpfsMountOption.NOEXEC,
                    batch.TmpfsMountOption.NOSUID,
                    batch.TmpfsMountOption.NODEV,
                ],
            )
        )
        return parameters

    def _job_definition(self, settings: Settings, storage: Storage, logs: EncryptedLogs) -> batch.EcsJobDefinition:
        container = batch.EcsEc2ContainerDefinition(
            self,
            "WorkerContainer",
            image=ecs.ContainerImage.from_asset(
                str(REPO),
                file=DOCKERFILE,
                platform=ecr_assets.Platform.LINUX_AMD64,
                ignore_mode=IgnoreMode.DOCKER,
                exclude=docker_context_excludes(REPO, DOCKERFILE),
            ),
            gpu=1,
            cpu=JOB_VCPUS,
            memory=JOB_MEMORY,
            command=["--help"],  # every job overrides it with the spec and its output prefix
            # the worker reports progress (and RUNNING) to the experiment's item; the job adds its key
            environment={
                PROGRESS_TABLE_ENV: storage.table.table_name,
                SCRATCH_ROOT_ENV: SANDBOX_SCRATCH,
                # the operator's caps on a spec's limits.codec (context: codecMaxWallSeconds, ...), as the API has them
                **settings.codec_cap_environment,
            },
            job_role=self.job_role,
            linux_parameters=self._sandbox_scratch(),
            logging=ecs.LogDrivers.aws_logs(stream_prefix="worker", log_group=logs.group(self, "WorkerLogs")),
        )
        acknowledge(
            container,
            "IAM5",
            "The execution role's ecr:GetAuthorizationToken has no resource-level permissions, so it is granted on "
            "'*'; image pulls and log writes are scoped to the asset repository and the worker log group.",
            finding="Resource::*",
        )
        return batch.EcsJobDefinition(
            self,
            "WorkerJob",
            container=container,
            timeout=Duration.seconds(settings.max_timeout_seconds),  # each submission sets its own, lower one
            retry_attempts=JOB_ATTEMPTS,
            # Order matters: Batch takes the first match. Only a lost host is worth another attempt; a worker
            # that exited (bad spec, stall, codec error, out of memory) would fail the same way again.
            retry_strategies=[
                batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.custom(on_status_reason=HOST_LOST_REASON)),
                batch.RetryStrategy.of(batch.Action.EXIT, batch.Reason.custom(on_reason="*")),
            ],
        )


def docker_context_excludes(context: Path, dockerfile: str) -> list[str]:
    """Exclude everything from the image's build context except the Dockerfile and what it COPYs.

    The image asset's hash then changes only when the worker's inputs change, not with every edit
    to the stacks, the Lambdas or the tests.
    """
    sources = [
        source
        for line in (context / dockerfile).read_text(encoding="utf-8").splitlines()
        if line.strip().upper().startswith("COPY ") and "--from" not in line
        for source in shlex.split(line.strip())[1:-1]
        if not source.startswith("--")
    ]
    kept = [dockerfile, *(source.rstrip("/") for source in sources)]
    return ["*", *(f"!{path}" for path in kept), "**/__pycache__", "**/*.pyc"]
