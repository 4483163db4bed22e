"""keyvault on the schedulers teams already run.

- `aws_lambda`: AWS Secrets Manager's rotation function (createSecret / setSecret /
  testSecret / finishSecret) plus a daily maintenance invocation;
- `gcp_rotate`: Secret Manager's `SECRET_ROTATE` Pub/Sub notification (Cloud Run functions);
- `scheduled`: one unattended run of the rotation engine with notifications, which the two
  above, the Kubernetes CronJob, GitHub Actions and the systemd timer all share;
- `multi_scan`: the leak scanner over many repositories in one process.

Nothing here is imported by `import keyvault`; cloud SDKs load inside the handlers.
"""
