# keyvault on Google Cloud: Secret Manager publishes SECRET_ROTATE once a day to a Pub/Sub
# topic; a Cloud Run function (keyvault.integrations.gcp_rotate) runs the rotation engine for
# the policy environment that names the secret. The policy decides what is due (90 days, the
# warning window, the key's expires_at); the daily message is only the clock.
#
#   cp policies/rotation.toml deploy/gcp/function/rotation.toml
#   terraform init && terraform apply -var project=my-project -var next_rotation_time=2026-12-01T06:00:00Z
#
# No key is in this file or in Terraform state: the secret's versions are added by
# `keyvault stage` / the rotation itself, never by Terraform.

variable "project" { type = string }
variable "region" {
  type    = string
  default = "europe-west1"
}
variable "secret_id" {
  type    = string
  default = "anthropic-api-key"
}
variable "next_rotation_time" {
  type        = string
  description = "first notification (RFC 3339, at least 5 minutes ahead); then every rotation_period"
}

data "google_project" "this" { project_id = var.project }

resource "google_pubsub_topic" "rotate" {
  project = var.project
  name    = "keyvault-secret-rotate"
}

# Secret Manager's service agent publishes the notifications
resource "google_project_service_identity" "secretmanager" {
  provider = google-beta
  project  = var.project
  service  = "secretmanager.googleapis.com"
}

resource "google_pubsub_topic_iam_member" "secretmanager_publishes" {
  project = var.project
  topic   = google_pubsub_topic.rotate.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_project_service_identity.secretmanager.email}"
}

resource "google_secret_manager_secret" "api_key" {
  project   = var.project
  secret_id = var.secret_id
  replication {
    auto {}
  }
  topics {
    name = google_pubsub_topic.rotate.id
  }
  rotation {
    rotation_period    = "86400s" # daily tick; the 90-day rule lives in the policy
    next_rotation_time = var.next_rotation_time
  }
  depends_on = [google_pubsub_topic_iam_member.secretmanager_publishes]
}

resource "google_service_account" "rotator" {
  project      = var.project
  account_id   = "keyvault-rotator"
  display_name = "keyvault: rotates the Anthropic API key"
}

# the rotation journal lives in the annotations of a sibling secret (the rotator may not
# create secrets, so it is made here, empty)
resource "google_secret_manager_secret" "state" {
  project   = var.project
  secret_id = "${var.secret_id}-keyvault-state"
  labels    = { keyvault = "rotation-state" }
  replication {
    auto {}
  }
}

# exactly what rotation does to one secret (policies/gcp/rotator.yaml): no destroy, no delete,
# no create, no IAM changes
resource "google_project_iam_custom_role" "rotator" {
  project     = var.project
  role_id     = "keyvaultRotator"
  title       = "keyvault rotator"
  permissions = [
    "secretmanager.secrets.get",
    "secretmanager.secrets.update",
    "secretmanager.versions.access",
    "secretmanager.versions.add",
    "secretmanager.versions.disable",
    "secretmanager.versions.get",
    "secretmanager.versions.list",
  ]
}

resource "google_secret_manager_secret_iam_member" "rotator" {
  for_each  = { key = google_secret_manager_secret.api_key.secret_id, state = google_secret_manager_secret.state.secret_id }
  project   = var.project
  secret_id = each.value
  role      = google_project_iam_custom_role.rotator.id
  member    = "serviceAccount:${google_service_account.rotator.email}"
}

data "archive_file" "function" {
  type        = "zip"
  source_dir  = "${path.module}/function"
  output_path = "${path.module}/build/function.zip"
}

resource "google_storage_bucket" "source" {
  project                     = var.project
  name                        = "${var.project}-keyvault-function-source"
  location                    = var.region
  uniform_bucket_level_access = true
}

resource "google_storage_bucket_object" "source" {
  name   = "keyvault-rotate-${data.archive_file.function.output_md5}.zip"
  bucket = google_storage_bucket.source.name
  source = data.archive_file.function.output_path
}

resource "google_cloudfunctions2_function" "rotate" {
  project  = var.project
  location = var.region
  name     = "keyvault-rotate"
  build_config {
    runtime     = "python312"
    entry_point = "rotate"
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }
  service_config {
    max_instance_count    = 1 # one rotator at a time (the journal enforces it too)
    available_memory      = "256M"
    timeout_seconds       = 300
    ingress_settings      = "ALLOW_INTERNAL_ONLY"
    service_account_email = google_service_account.rotator.email
    environment_variables = {
      KEYVAULT_POLICY = "rotation.toml"
    }
    # notifications: KEYVAULT_WEBHOOK_URL / KEYVAULT_WEBHOOK_SECRET from Secret Manager
    # secret_environment_variables { key = "KEYVAULT_WEBHOOK_URL" ... }
  }
  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
    pubsub_topic          = google_pubsub_topic.rotate.id
    retry_policy          = "RETRY_POLICY_RETRY" # only undetermined failures raise (see the handler)
    service_account_email = google_service_account.rotator.email
  }
}

# the Pub/Sub trigger's identity may invoke the function's service
resource "google_cloud_run_service_iam_member" "trigger_invokes" {
  project  = var.project
  location = var.region
  service  = google_cloudfunctions2_function.rotate.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.rotator.email}"
}

# the policy's admin_key = "gcp-sm://projects/P/secrets/anthropic-admin-key": read only
variable "admin_key_secret" {
  type    = string
  default = "anthropic-admin-key"
}

resource "google_secret_manager_secret_iam_member" "admin_key_read" {
  project   = var.project
  secret_id = var.admin_key_secret
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.rotator.email}"
}
