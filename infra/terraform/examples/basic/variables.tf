variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"
  nullable    = false
}

variable "name" {
  description = "Name of the function and prefix of the bucket name."
  type        = string
  default     = "pullthrough"
  nullable    = false
}

variable "architecture" {
  description = "arm64 or x86_64; selects build/lambda/pullthrough-<architecture>.zip unless package_path is set."
  type        = string
  default     = "arm64"
  nullable    = false
}

variable "package_path" {
  description = "Deployment zip to upload. null uses the one `make package` builds."
  type        = string
  default     = null
}

variable "package_s3_bucket" {
  description = "Bucket of a released deployment zip; with package_s3_key, used instead of a local zip."
  type        = string
  default     = null
}

variable "package_s3_key" {
  description = "Key of the released deployment zip in package_s3_bucket."
  type        = string
  default     = null
}

variable "publish" {
  description = "Publish versions and serve the function URL from the alias \"live\", for rollback."
  type        = bool
  default     = false
  nullable    = false
}

variable "upstreams" {
  description = "Registries to serve, `host` or `host=base-url`, e.g. [\"docker.io\", \"ghcr.io\"]. Empty mirrors Docker Hub only."
  type        = list(string)
  default     = []
  nullable    = false
}

variable "client_cidrs" {
  description = "Public source addresses allowed to pull (your nodes' NAT gateway addresses, e.g. 203.0.113.10/32). Without them, set allow_public_access."
  type        = list(string)
  default     = []
  nullable    = false
}

variable "allow_public_access" {
  description = "Deploy a mirror anyone who learns the URL can use, at your expense (the module refuses otherwise when client_cidrs is empty)."
  type        = bool
  default     = false
  nullable    = false
}

variable "reserved_concurrent_executions" {
  description = "Concurrency reserved for (and capping) the function; null leaves it unreserved, which an account whose Lambda concurrency quota is under 150 needs (AWS keeps 100 unreserved)."
  type        = number
  default     = 50
}

variable "check_concurrency_quota" {
  description = "Check reserved_concurrent_executions against the account's Lambda concurrency quota before planning; false for a stand-in without Service Quotas."
  type        = bool
  default     = true
  nullable    = false
}

variable "extra_environment" {
  description = "More environment variables for the function, e.g. PULLTHROUGH_S3_PATH_STYLE for an S3 stand-in."
  type        = map(string)
  default     = {}
  nullable    = false
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete a bucket that still holds cached content."
  type        = bool
  default     = false
  nullable    = false
}

################################################################################
# Local stand-ins for AWS. Leave at their defaults for a real deployment.
################################################################################

variable "aws_endpoints" {
  description = "Endpoint URL overrides by service (cloudwatch, iam, kms, lambda, logs, s3, secretsmanager, servicequotas, sts)."
  type        = map(string)
  default     = {}
  nullable    = false

  validation {
    condition     = alltrue([for k in keys(var.aws_endpoints) : contains(["cloudwatch", "iam", "kms", "lambda", "logs", "s3", "secretsmanager", "servicequotas", "sts"], k)])
    error_message = "aws_endpoints keys must be among cloudwatch, iam, kms, lambda, logs, s3, secretsmanager, servicequotas, sts."
  }
}

variable "s3_use_path_style" {
  description = "Address buckets as <endpoint>/<bucket> instead of <bucket>.<endpoint>; needed by most S3 stand-ins."
  type        = bool
  default     = false
  nullable    = false
}

variable "skip_credentials_validation" {
  description = "Do not check the credentials with STS before planning."
  type        = bool
  default     = false
  nullable    = false
}

variable "skip_requesting_account_id" {
  description = "Do not look up the account ID."
  type        = bool
  default     = false
  nullable    = false
}

variable "skip_metadata_api_check" {
  description = "Do not ask the EC2 instance metadata service for credentials."
  type        = bool
  default     = false
  nullable    = false
}
