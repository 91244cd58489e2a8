################################################################################
# Function
################################################################################

variable "name" {
  description = "Name of the function, its role and log group, and the prefix of the generated bucket name. Unique per account (the role is global) and region."
  type        = string
  default     = "pullthrough"
  nullable    = false

  validation {
    # 37 characters is the longest bucket_prefix S3 names allow, with the "-".
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,34}[a-z0-9]$", var.name))
    error_message = "name must be 2-36 characters of lower-case letters, digits and hyphens, starting and ending with a letter or digit."
  }
}

variable "package_path" {
  description = "Path to the deployment zip holding the `bootstrap` binary (`make package` writes build/lambda/pullthrough-<arch>.zip at the repository root)."
  type        = string
  nullable    = false

  validation {
    condition     = endswith(var.package_path, ".zip")
    error_message = "package_path must name a .zip file."
  }
}

variable "architecture" {
  description = "Instruction set of the function; must match the binary in package_path. arm64 is about 20% cheaper per GB-second."
  type        = string
  default     = "arm64"
  nullable    = false

  validation {
    condition     = contains(["arm64", "x86_64"], var.architecture)
    error_message = "architecture must be arm64 or x86_64."
  }
}

variable "memory_size" {
  description = "Memory of the function in MB. CPU and network bandwidth grow with it; see README for why 1024."
  type        = number
  default     = 1024
  nullable    = false

  validation {
    condition     = var.memory_size >= 128 && var.memory_size <= 10240 && floor(var.memory_size) == var.memory_size
    error_message = "memory_size must be a whole number between 128 and 10240."
  }
}

variable "timeout" {
  description = "Function timeout in seconds. A blob fill runs inside one invocation, so this bounds the largest layer the cache can fill."
  type        = number
  default     = 900
  nullable    = false

  validation {
    condition     = var.timeout >= 1 && var.timeout <= 900 && floor(var.timeout) == var.timeout
    error_message = "timeout must be a whole number of seconds between 1 and 900."
  }
}

variable "reserved_concurrent_executions" {
  description = "Concurrency reserved for (and capping) the function. null leaves it unreserved; 0 stops all invocations, an emergency brake for a public URL."
  type        = number
  default     = null

  validation {
    condition     = var.reserved_concurrent_executions == null || try(var.reserved_concurrent_executions >= 0 && floor(var.reserved_concurrent_executions) == var.reserved_concurrent_executions, false)
    error_message = "reserved_concurrent_executions must be null or a whole number >= 0."
  }
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the function's logs; 0 keeps them forever."
  type        = number
  default     = 30
  nullable    = false

  validation {
    condition     = contains([0, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of the values CloudWatch Logs accepts: 0, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653."
  }
}

variable "role_permissions_boundary_arn" {
  description = "ARN of a permissions boundary for the function's role, where the account requires one."
  type        = string
  default     = null

  validation {
    condition     = var.role_permissions_boundary_arn == null || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:policy/.+$", var.role_permissions_boundary_arn))
    error_message = "role_permissions_boundary_arn must be an IAM policy ARN."
  }
}

################################################################################
# Storage
################################################################################

variable "bucket_name" {
  description = "Name of the cache bucket. null generates a unique name starting with \"<name>-\"."
  type        = string
  default     = null

  validation {
    condition     = var.bucket_name == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name: 3-63 lower-case letters, digits, dots and hyphens."
  }
}

variable "prefix" {
  description = "Key prefix, without slashes at either end, under which the function stores everything. The role can touch nothing outside it. Empty uses the whole bucket."
  type        = string
  default     = ""
  nullable    = false

  validation {
    # No IAM wildcard characters: the prefix ends up in policy resources.
    condition     = var.prefix == "" || can(regex("^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", var.prefix))
    error_message = "prefix must be empty or path segments of letters, digits, '.', '_' and '-' separated by single '/', with no '/' at either end."
  }
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete the bucket while it still holds cached content."
  type        = bool
  default     = false
  nullable    = false
}

variable "kms_key_arn" {
  description = "ARN of a KMS key for bucket encryption (SSE-KMS with a bucket key). null uses SSE-S3 (AES256). The role is granted Decrypt and GenerateDataKey on it; the key policy must allow that."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:...:kms:<region>:<account>:key/<id>), not an alias."
  }
}

variable "cache_expiration_days" {
  description = "Delete cached objects this many days after they were written; the next pull fetches them again. null keeps them until removed by hand."
  type        = number
  default     = null

  validation {
    condition     = var.cache_expiration_days == null || try(var.cache_expiration_days >= 1 && floor(var.cache_expiration_days) == var.cache_expiration_days, false)
    error_message = "cache_expiration_days must be null or a whole number >= 1."
  }
}

################################################################################
# Mirror behaviour (PULLTHROUGH_* environment of the function)
################################################################################

variable "upstream" {
  description = "Base URL of the registry the cache mirrors (PULLTHROUGH_UPSTREAM)."
  type        = string
  default     = "https://registry-1.docker.io"
  nullable    = false

  validation {
    condition     = can(regex("^https?://[^/[:space:]]+$", var.upstream))
    error_message = "upstream must be a scheme and host (and optional port) with no path or trailing slash, e.g. https://registry-1.docker.io."
  }
}

variable "manifest_ttl" {
  description = "How long a cached tag is served before the upstream is asked again, as a Go duration (PULLTHROUGH_MANIFEST_TTL). Manifests by digest never expire."
  type        = string
  default     = "5m"
  nullable    = false

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$", var.manifest_ttl))
    error_message = "manifest_ttl must be a Go duration such as 30s, 5m or 1h30m."
  }
}

variable "presign_ttl" {
  description = "Expiry of the presigned S3 URLs clients are redirected to, as a Go duration (PULLTHROUGH_PRESIGN_TTL). A URL also dies with the role session that signed it, so keep it short."
  type        = string
  default     = "15m"
  nullable    = false

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$", var.presign_ttl))
    error_message = "presign_ttl must be a Go duration such as 5m or 15m."
  }
}

variable "log_level" {
  description = "Lowest level the function logs (PULLTHROUGH_LOG_LEVEL); Lambda's application log level follows it."
  type        = string
  default     = "info"
  nullable    = false

  validation {
    condition     = contains(["debug", "info", "warn", "error"], var.log_level)
    error_message = "log_level must be debug, info, warn or error."
  }
}

variable "upstream_credentials_secret_arn" {
  description = "ARN of an existing Secrets Manager secret with upstream registry credentials (PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET). null pulls anonymously."
  type        = string
  default     = null

  validation {
    condition     = var.upstream_credentials_secret_arn == null || can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", var.upstream_credentials_secret_arn))
    error_message = "upstream_credentials_secret_arn must be a Secrets Manager secret ARN."
  }

  validation {
    condition     = !(var.upstream_credentials_secret_arn != null && var.create_upstream_credentials_secret)
    error_message = "Set upstream_credentials_secret_arn or create_upstream_credentials_secret, not both."
  }
}

variable "create_upstream_credentials_secret" {
  description = "Create an empty Secrets Manager secret for upstream credentials and point the function at it. Terraform manages only the secret, never its value; set that with the AWS CLI (see README)."
  type        = bool
  default     = false
  nullable    = false
}

variable "extra_environment" {
  description = "More environment variables for the function. Cannot override the PULLTHROUGH_* variables this module sets or the names Lambda reserves."
  type        = map(string)
  default     = {}
  nullable    = false

  validation {
    condition = alltrue([
      for k in keys(var.extra_environment) : can(regex("^[A-Za-z][A-Za-z0-9_]*$", k)) && !contains([
        "PULLTHROUGH_STORE", "PULLTHROUGH_UPSTREAM", "PULLTHROUGH_MANIFEST_TTL", "PULLTHROUGH_PRESIGN_TTL",
        "PULLTHROUGH_LOG_LEVEL", "PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET",
        "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
      ], k)
    ])
    error_message = "extra_environment keys must be valid variable names and must not be a PULLTHROUGH_* variable set by this module or a name Lambda reserves (AWS_REGION, AWS_ACCESS_KEY_ID, ...)."
  }
}

variable "tags" {
  description = "Tags for every resource that takes them."
  type        = map(string)
  default     = {}
  nullable    = false
}
