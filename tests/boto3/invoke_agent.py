#!/usr/bin/env python3
"""A client nobody here wrote: boto3's invoke_agent against agentdeck's simulator.

usage: invoke_agent.py ENDPOINT  -> prints one JSON summary on stdout

Runs a turn that returns control, resumes it with CONFIRM, and a knowledge-base turn with
streamed final response; summarises everything boto3 decoded.
"""
import base64
import json
import sys

import boto3
from botocore.config import Config


def drain(response):
    out = {"chunks": "", "traces": [], "returnControl": None, "files": 0, "sessionId": response.get("sessionId"),
           "contentType": response.get("contentType"), "eventTimeTypes": set()}
    for event in response["completion"]:
        if "chunk" in event:
            out["chunks"] += event["chunk"]["bytes"].decode("utf-8")
        elif "trace" in event:
            part = event["trace"]
            kinds = list(part["trace"].keys())
            inner = part["trace"][kinds[0]]
            sub = list(inner.keys()) if isinstance(inner, dict) else []
            out["eventTimeTypes"].add(type(part.get("eventTime")).__name__)
            out["traces"].append({"kind": kinds[0], "sub": sub, "eventTime": str(part.get("eventTime")),
                                  "collaborator": part.get("collaboratorName")})
        elif "returnControl" in event:
            out["returnControl"] = event["returnControl"]
        elif "files" in event:
            out["files"] += len(event["files"].get("files", []))
        else:
            out.setdefault("unknown", []).append(list(event.keys()))
    return out


def main():
    endpoint = sys.argv[1]
    client = boto3.client(
        "bedrock-agent-runtime",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="secret",
        config=Config(retries={"max_attempts": 1}),
    )
    summary = {}
    first = drain(client.invoke_agent(agentId="PAYAGENT01", agentAliasId="PRODALIAS", sessionId="boto3-session-1",
                                      inputText="pay 5000 EUR to prod-7", enableTrace=True))
    rc = first["returnControl"]
    summary["first"] = {"traces": first["traces"], "chunks": first["chunks"], "sessionId": first["sessionId"],
                        "contentType": first["contentType"], "eventTimeTypes": sorted(first["eventTimeTypes"]),
                        "invocationId": rc and rc["invocationId"],
                        "inputs": rc and rc["invocationInputs"]}
    results = []
    for item in rc["invocationInputs"]:
        fn = item["functionInvocationInput"]
        results.append({"functionResult": {"actionGroup": fn["actionGroup"], "function": fn["function"],
                                           "confirmationState": "CONFIRM"}})
    resumed = drain(client.invoke_agent(agentId="PAYAGENT01", agentAliasId="PRODALIAS", sessionId="boto3-session-1",
                                        enableTrace=True,
                                        sessionState={"invocationId": rc["invocationId"],
                                                      "returnControlInvocationResults": results}))
    summary["resumed"] = {"traces": resumed["traces"], "chunks": resumed["chunks"]}
    streamed = drain(client.invoke_agent(agentId="KBAGENT003", agentAliasId="LIVE", sessionId="boto3-session-2",
                                         inputText="what is the travel policy?", enableTrace=True,
                                         streamingConfigurations={"streamFinalResponse": True}))
    summary["streamed"] = {"traces": streamed["traces"], "chunks": streamed["chunks"]}
    try:
        client.invoke_agent(agentId="PAYAGENT01", agentAliasId="PRODALIAS", sessionId="boto3-session-1",
                            sessionState={"invocationId": rc["invocationId"], "returnControlInvocationResults": results})["completion"]
        summary["reuse_error"] = None
    except client.exceptions.ValidationException as e:
        summary["reuse_error"] = e.response["Error"]["Code"]
    try:
        drain(client.invoke_agent(agentId="NOSUCHAGNT", agentAliasId="LIVE", sessionId="boto3-session-3", inputText="hi"))
        summary["not_found_error"] = None
    except client.exceptions.ResourceNotFoundException as e:
        summary["not_found_error"] = e.response["Error"]["Code"]
    json.dump(summary, sys.stdout, default=str)


if __name__ == "__main__":
    main()
