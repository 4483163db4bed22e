"""Cloud Run function (2nd gen) source: the Secret Manager SECRET_ROTATE subscriber.

Deployed with rotation.tf (or `gcloud functions deploy ... --entry-point rotate`); the policy
file is shipped beside this file as rotation.toml.
"""

import functions_framework

from keyvault.integrations.gcp_rotate import handle_cloud_event


@functions_framework.cloud_event
def rotate(cloud_event):
    handle_cloud_event(cloud_event)
