#!/usr/bin/env python3
"""Records InvokeAgent responses the way people dump boto3's stream to files, for import fixtures.

usage: dump_events.py ENDPOINT OUT_DIR

Writes, from agentdeck's simulator through boto3:
  boto3-payment.json  a JSON array of the events of a turn that returns control (chunk bytes as
                      base64, datetimes as ISO 8601), then of its resume (CONFIRM)
  boto3-kb.jsonl      one event per line of a knowledge-base turn with a streamed final response
                      (chunk bytes as Python's repr, which is what json.dumps(default=str) writes)
"""
import base64
import datetime
import json
import os
import sys

import boto3
from botocore.config import Config


def b64_default(o):
    if isinstance(o, bytes):
        return base64.b64encode(o).decode("ascii")
    if isinstance(o, datetime.datetime):
        return o.isoformat()
    raise TypeError(type(o))


def main():
    endpoint, out = sys.argv[1], sys.argv[2]
    client = boto3.client("bedrock-agent-runtime", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="AKIDTEST", aws_secret_access_key="secret",
                          config=Config(retries={"max_attempts": 1}))
    first = list(client.invoke_agent(agentId="PAYAGENT01", agentAliasId="PRODALIAS", sessionId="fixture-pay-1",
                                     inputText="pay 5000 EUR to prod-7", enableTrace=True)["completion"])
    rc = next(e["returnControl"] for e in first if "returnControl" in e)
    results = [{"functionResult": {"actionGroup": i["functionInvocationInput"]["actionGroup"],
                                   "function": i["functionInvocationInput"]["function"],
                                   "confirmationState": "CONFIRM"}} for i in rc["invocationInputs"]]
    resumed = list(client.invoke_agent(agentId="PAYAGENT01", agentAliasId="PRODALIAS", sessionId="fixture-pay-1",
                                       enableTrace=True,
                                       sessionState={"invocationId": rc["invocationId"],
                                                     "returnControlInvocationResults": results})["completion"])
    with open(os.path.join(out, "boto3-payment.json"), "w") as f:
        json.dump(first + resumed, f, default=b64_default, indent=1)
    kb = client.invoke_agent(agentId="KBAGENT003", agentAliasId="LIVE", sessionId="fixture-kb-1",
                             inputText="what is the travel policy?", enableTrace=True,
                             streamingConfigurations={"streamFinalResponse": True})["completion"]
    with open(os.path.join(out, "boto3-kb.jsonl"), "w") as f:
        for event in kb:
            f.write(json.dumps(event, default=str) + "\n")


if __name__ == "__main__":
    main()
