"""boto3 against the simulator: InvokeAgent with traces, a return of control and its resume.

Usage: python3 boto3_check.py ENDPOINT. Prints one JSON line with what boto3 decoded.
"""
import json
import sys

import boto3
from botocore.config import Config

endpoint = sys.argv[1]
client = boto3.client(
    "bedrock-agent-runtime",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="AKIDTEST",
    aws_secret_access_key="secret",
    config=Config(retries={"max_attempts": 1}),
)


def run(**kw):
    resp = client.invoke_agent(agentId="PAYAGENT01", agentAliasId="PRODALIAS", sessionId="boto-1", enableTrace=True, **kw)
    events = list(resp["completion"])
    return resp, events


resp, events = run(inputText="pay 42 GBP to acct-5")
kinds = [next(iter(e)) for e in events]
roc = events[-1]["returnControl"]
traces = [e["trace"] for e in events if "trace" in e]
inv = roc["invocationInputs"][0]["functionInvocationInput"]
resumed_resp, resumed = run(sessionState={
    "invocationId": roc["invocationId"],
    "returnControlInvocationResults": [{"functionResult": {
        "actionGroup": inv["actionGroup"], "function": inv["function"], "confirmationState": "CONFIRM"}}],
})
text = "".join(e["chunk"]["bytes"].decode() for e in resumed if "chunk" in e)
error = None
try:
    client.invoke_agent(agentId="NOSUCH", agentAliasId="LIVE", sessionId="boto-1", inputText="hi")
except client.exceptions.ResourceNotFoundException as e:
    error = e.response["Error"]["Code"]
print(json.dumps({
    "sessionId": resp["sessionId"],
    "contentType": resp["contentType"],
    "kinds": kinds,
    "eventTimeType": type(traces[0]["eventTime"]).__name__,
    "function": inv["function"],
    "params": {p["name"]: p["value"] for p in inv["parameters"]},
    "text": text,
    "error": error,
}))
