#!/usr/bin/env python3
"""A client nobody here wrote: boto3's cloudwatch client against agentdeck's CloudWatch stand-in.

usage: cloudwatch.py ENDPOINT START_EPOCH END_EPOCH  -> prints one JSON summary on stdout

Reports the protocol botocore chose, discovers AWS/Bedrock/Agents with the ListMetrics
paginator, reads each alias's InvocationCount Sum and TotalTime p95 over [START, END) in one
period, reads agentdeck/test DecisionLatency p95 (put by the Rust client), puts a distribution
of its own and reads its p90 back, and reports one AWS-shaped error.
"""
import datetime
import json
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def main():
    endpoint, start, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    cw = boto3.client("cloudwatch", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test",
                      config=Config(retries={"max_attempts": 1}))
    out = {"protocol": cw.meta.service_model.resolved_protocol
           if hasattr(cw.meta.service_model, "resolved_protocol") else cw.meta.service_model.protocol}
    start_t = datetime.datetime.fromtimestamp(start, datetime.timezone.utc)
    end_t = datetime.datetime.fromtimestamp(end, datetime.timezone.utc)
    period = ((end - start + 59) // 60) * 60

    metrics = []
    for page in cw.get_paginator("list_metrics").paginate(Namespace="AWS/Bedrock/Agents"):
        metrics.extend(page["Metrics"])
    out["metricNames"] = sorted({m["MetricName"] for m in metrics})
    per_alias = [m for m in metrics if m["MetricName"] in ("InvocationCount", "TotalTime")
                 and any(d["Name"] == "AgentAliasArn" for d in m["Dimensions"])]
    queries = []
    for i, m in enumerate(per_alias):
        stat = "Sum" if m["MetricName"] == "InvocationCount" else "p95"
        queries.append({"Id": f"q{i}", "MetricStat": {"Metric": m, "Period": period, "Stat": stat}})
    aliases = {}
    if queries:
        r = cw.get_metric_data(MetricDataQueries=queries, StartTime=start_t, EndTime=end_t)
        for res in r["MetricDataResults"]:
            m = per_alias[int(res["Id"][1:])]
            arn = next(d["Value"] for d in m["Dimensions"] if d["Name"] == "AgentAliasArn")
            key = "invocations" if m["MetricName"] == "InvocationCount" else "totalTimeP95"
            aliases.setdefault(arn, {})[key] = sum(res["Values"]) if res["Values"] else None
            aliases[arn].setdefault("timestampTypes", []).extend(
                sorted({type(t).__name__ for t in res["Timestamps"]}))
    out["aliases"] = aliases

    dims = [{"Name": "Agent", "Value": "PAYAGENT01"}, {"Name": "Alias", "Value": "PRODALIAS"}]
    r = cw.get_metric_data(
        MetricDataQueries=[{"Id": "lat", "MetricStat": {"Metric": {
            "Namespace": "agentdeck/test", "MetricName": "DecisionLatency", "Dimensions": dims},
            "Period": period, "Stat": "p95"}}],
        StartTime=start_t, EndTime=end_t)
    out["decisionLatencyP95"] = r["MetricDataResults"][0]["Values"]

    now = datetime.datetime.now(datetime.timezone.utc)
    cw.put_metric_data(Namespace="boto3/test", MetricData=[{
        "MetricName": "Wait", "Unit": "Seconds", "Timestamp": now,
        "Values": [1.0, 2.0, 3.0, 10.0], "Counts": [5.0, 3.0, 1.0, 1.0]}])
    r = cw.get_metric_data(
        MetricDataQueries=[{"Id": "w", "MetricStat": {"Metric": {"Namespace": "boto3/test", "MetricName": "Wait"},
                                                       "Period": 3600, "Stat": "p90"}},
                           {"Id": "s", "MetricStat": {"Metric": {"Namespace": "boto3/test", "MetricName": "Wait"},
                                                       "Period": 3600, "Stat": "Sum"}}],
        StartTime=now - datetime.timedelta(minutes=30), EndTime=now + datetime.timedelta(minutes=30),
        ScanBy="TimestampAscending")
    out["own"] = {res["Id"]: res["Values"] for res in r["MetricDataResults"]}

    try:
        cw.put_metric_data(Namespace="AWS/Bedrock/Agents", MetricData=[{"MetricName": "x", "Value": 1.0}])
        out["error"] = None
    except ClientError as e:
        out["error"] = {"code": e.response["Error"]["Code"], "message": e.response["Error"]["Message"],
                        "status": e.response["ResponseMetadata"]["HTTPStatusCode"]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
