"""The REST API: SigV4 (AWS_IAM) on every method, one proxy Lambda behind it, the spec model on POST /experiments.

Its routes, parameters and request models come from the API contract (codeclab/experiments/api_contract.py),
as the OpenAPI document does.

Step Functions' own REST integration (StepFunctionsRestApi) needs an EXPRESS machine; ours is STANDARD, and the
API also lists and reads records, so a Lambda serves it.
"""

from __future__ import annotations

from typing import cast

from aws_cdk import CfnResource
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from codeclab.experiments.api_contract import JSON, ROUTES, JsonSchema
from stacks.api_model import request_models
from stacks.logs import EncryptedLogs
from stacks.nag import acknowledge

STAGE = "v1"
_REQUEST_LOCATION = {"query": "querystring", "header": "header"}  # API Gateway's names for where a parameter is


class ExperimentsApi(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, handler: lambda_.IFunction, logs: EncryptedLogs) -> None:
        super().__init__(scope, construct_id)
        self.rest_api = apigateway.RestApi(
            self,
            "RestApi",
            description="codeclab: submit, list, read and cancel experiments (SigV4-signed requests only)",
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            cloud_watch_role=True,  # the account-level role API Gateway needs for execution logs
            deploy_options=apigateway.StageOptions(
                stage_name=STAGE,
                access_log_destination=apigateway.LogGroupLogDestination(logs.group(self, "AccessLogs")),
                access_log_format=apigateway.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
                logging_level=apigateway.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # request bodies may carry custom codec source code
                metrics_enabled=True,
                tracing_enabled=True,
                # A research team's API: a CLI polling status and a few submissions a second at most.
                throttling_rate_limit=20,
                throttling_burst_limit=40,
            ),
            default_method_options=apigateway.MethodOptions(authorization_type=apigateway.AuthorizationType.IAM),
            default_integration=apigateway.LambdaIntegration(handler),
        )
        self._routes()
        self._acknowledge()

    def _routes(self) -> None:
        validator = self.rest_api.add_request_validator(
            "Validator", validate_request_body=True, validate_request_parameters=True
        )
        models = {name: self._model(name, schema) for name, schema in request_models().items()}
        for route in ROUTES:
            # The handler checks every parameter itself, so a bad one gets its message naming what to fix; API
            # Gateway only passes them on. A path parameter is part of the resource path already.
            parameters = {
                f"method.request.{_REQUEST_LOCATION[p.location]}.{p.name}": False
                for p in route.parameters
                if p.location != "path"
            }
            self.rest_api.root.resource_for_path(route.path).add_method(
                route.method,
                request_parameters=parameters or None,
                request_validator=validator if route.body else None,
                request_models={JSON: models[route.body]} if route.body else None,
            )

    def _model(self, name: str, schema: JsonSchema) -> apigateway.Model:
        model = self.rest_api.add_model(
            name,
            content_type=JSON,
            model_name=name,
            schema=apigateway.JsonSchema(
                schema=apigateway.JsonSchemaVersion.DRAFT4, type=apigateway.JsonSchemaType.OBJECT
            ),
        )
        # The L2 JsonSchema type cannot hold $ref/definitions as read from a file, so the model's schema is set raw.
        cast(CfnResource, model.node.default_child).add_property_override("Schema", schema)
        return model

    def _acknowledge(self) -> None:
        acknowledge(
            self.rest_api,
            "COG4",
            "Every method uses AWS_IAM (SigV4) authorization: the callers are the operator's IAM principals "
            "and the codeclab CLI with their AWS credentials, so there is no Cognito user pool to authorize against.",
        )
        acknowledge(
            self.rest_api,
            "APIG3",
            "Unsigned requests are rejected by IAM authorization before any integration runs and the stage is "
            "throttled to 20 requests/s; a WAF web ACL would add a fixed monthly cost to a single-team research "
            "API without blocking anything that IAM authorization does not already block.",
        )
        acknowledge(
            self.rest_api,
            "IAM4",
            "The API Gateway account role (CloudWatch execution logging) uses AmazonAPIGatewayPushToCloudWatchLogs, "
            "the service's documented policy; it can only create and write API Gateway log groups.",
            finding="Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs",
        )
