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
  description = "Path to a local deployment zip holding the `bootstrap` binary (`make release` writes pullthrough-<version>-<arch>.zip, `make package` build/lambda/pullthrough-<arch>.zip). Set this or package_s3_bucket and package_s3_key."
  type        = string
  default     = null

  validation {
    condition     = var.package_path == null || try(endswith(var.package_path, ".zip"), false)
    error_message = "package_path must name a .zip file."
  }

  validation {
    condition     = (var.package_path == null) != (var.package_s3_bucket == null && var.package_s3_key == null)
    error_message = "Set either package_path or package_s3_bucket with package_s3_key, not both and not neither."
  }
}

variable "package_s3_bucket" {
  description = "Bucket of a released deployment zip (a release artifact uploaded to S3), so that Terraform runners need no Go toolchain. The bucket must be in the function's region."
  type        = string
  default     = null

  validation {
    condition     = (var.package_s3_bucket == null) == (var.package_s3_key == null)
    error_message = "package_s3_bucket and package_s3_key go together."
  }
}

variable "package_s3_key" {
  description = "Key of the released deployment zip in package_s3_bucket, e.g. pullthrough/pullthrough-1.2.0-arm64.zip."
  type        = string
  default     = null

  validation {
    condition     = var.package_s3_key == null || try(endswith(var.package_s3_key, ".zip"), false)
    error_message = "package_s3_key must name a .zip object."
  }
}

variable "package_s3_object_version" {
  description = "Version of the package_s3_key object in a versioned bucket. Without it, Terraform cannot see a new zip uploaded under the same key: give every release its own key (the version is in the file name) or set this."
  type        = string
  default     = null
}

variable "publish" {
  description = "Publish a numbered version of the function on every code or configuration change and serve the function URL from the alias `alias_name`, which points at the newest version. Rolling back is pointing the alias at an older version (aws lambda update-alias). Switching this on or off changes the mirror URL."
  type        = bool
  default     = false
  nullable    = false
}

variable "alias_name" {
  description = "Name of the alias the function URL serves when publish is true."
  type        = string
  default     = "live"
  nullable    = false

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9_-]{0,127}$", var.alias_name))
    error_message = "alias_name must start with a letter and hold up to 128 letters, digits, '-' and '_' (a number would name a version)."
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
  description = "Concurrency reserved for (and capping) the function, and with it the Lambda part of the bill (about $0.05 an hour per execution environment at 1024 MB arm64). Size it as concurrent pulls of uncached blobs (each holds an environment for its whole fill, up to fill_timeout) plus cached hits (about 10 ms each): 50 serves tens of nodes pulling at once. Taken from the account's regional limit (1,000 by default; often 10 or 50 on new accounts), which must keep 100 unreserved: with check_concurrency_quota the plan fails, saying what to set, when it would not. null leaves it unreserved (capped only by the account limit); 0 stops all invocations, an emergency brake."
  type        = number
  default     = 50

  validation {
    condition     = var.reserved_concurrent_executions == null || try(var.reserved_concurrent_executions >= 0 && floor(var.reserved_concurrent_executions) == var.reserved_concurrent_executions, false)
    error_message = "reserved_concurrent_executions must be null or a whole number >= 0."
  }
}

variable "check_concurrency_quota" {
  description = "Read the account's Lambda concurrency quota in the region (Service Quotas, service lambda, code L-B99A9384; needs servicequotas:GetAWSDefaultServiceQuota and servicequotas:GetServiceQuota) and refuse to plan a reserved_concurrent_executions that would leave AWS fewer than the 100 unreserved executions it keeps. New accounts often have a quota of 10 or 50, where nothing can be reserved. false skips the look-up (a role without those permissions, or a stand-in without Service Quotas); the check also cannot see what other functions reserve."
  type        = bool
  default     = true
  nullable    = false
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

variable "role_arn" {
  description = "ARN of an existing role for the function. null creates one named <name>-<region> with exactly the permissions the function uses (output role_policy_json); an existing role needs the same permissions, which the module then does not manage."
  type        = string
  default     = null

  validation {
    condition     = var.role_arn == null || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$", var.role_arn))
    error_message = "role_arn must be an IAM role ARN."
  }
}

variable "log_kms_key_arn" {
  description = "ARN of a KMS key that encrypts the function's log group. null uses CloudWatch Logs' own encryption. The key policy must allow the logs.<region>.amazonaws.com service principal to use it."
  type        = string
  default     = null

  validation {
    condition     = var.log_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.log_kms_key_arn))
    error_message = "log_kms_key_arn must be a KMS key ARN, not an alias."
  }
}

################################################################################
# Storage
################################################################################

variable "create_bucket" {
  description = "Create the cache bucket. false uses the existing bucket named by bucket_name as it is: the module then manages none of its settings (encryption, lifecycle, policy, public access block), and the role is still limited to prefix."
  type        = bool
  default     = true
  nullable    = false
}

variable "bucket_name" {
  description = "Name of the cache bucket. null generates a unique name starting with \"<name>-\". Required when create_bucket is false."
  type        = string
  default     = null

  validation {
    condition     = var.bucket_name == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name: 3-63 lower-case letters, digits, dots and hyphens."
  }

  validation {
    condition     = var.create_bucket || var.bucket_name != null
    error_message = "bucket_name must name the existing bucket when create_bucket is false."
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
  description = "Fallback expiry by creation date: delete cached objects this many days after they were written, used or not; the next pull fetches them again. null, the default, leaves eviction to the sweep (retention_days) or to you. Prefer retention_days, which keeps what is used."
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
  description = "Base URL of the one registry the cache mirrors when `upstreams` is empty (PULLTHROUGH_UPSTREAM)."
  type        = string
  default     = "https://registry-1.docker.io"
  nullable    = false

  validation {
    condition     = can(regex("^https?://[^/@[:space:]]+$", var.upstream))
    error_message = "upstream must be a scheme and host (and optional port) with no credentials, path or trailing slash, e.g. https://registry-1.docker.io; put credentials in the secret."
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

variable "upstreams" {
  description = "Registries the cache serves, each `host` or `host=base-url` (PULLTHROUGH_UPSTREAMS, joined with commas). The URL defaults to https://<host> (https://registry-1.docker.io for docker.io). Empty serves only `upstream`."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition = alltrue([
      for u in var.upstreams : can(regex("^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(=https?://[^/@[:space:]]+/?)?$", u))
    ])
    error_message = "Each upstreams entry must be a lower-case registry host with an optional port, optionally followed by =<scheme://host[:port]> with no path, e.g. docker.io, ghcr.io or registry.example=https://r.example:5000."
  }

  validation {
    condition     = length(distinct([for u in var.upstreams : split("=", u)[0]])) == length(var.upstreams)
    error_message = "upstreams must not name a registry host twice."
  }
}

variable "default_upstream" {
  description = "Registry host for requests that name none (no `?ns=` and no host path prefix), e.g. Docker's registry-mirrors (PULLTHROUGH_DEFAULT_UPSTREAM). null uses the first of `upstreams`."
  type        = string
  default     = null

  validation {
    condition = var.default_upstream == null || contains(
      length(var.upstreams) > 0 ? [for u in var.upstreams : split("=", u)[0]] : [
        replace(lower(try(regex("^https?://([^/]+)", var.upstream)[0], "")), "/^registry-1\\.docker\\.io$/", "docker.io")
      ],
      coalesce(var.default_upstream, "-")
    )
    error_message = "default_upstream must be one of the hosts in upstreams (or, with upstreams empty, the host of upstream; docker.io for Docker Hub)."
  }
}

variable "large_blob_policy" {
  description = "What a client gets on a miss for a blob of at least `large_blob_size` (PULLTHROUGH_LARGE_BLOB_POLICY): `wait` for the fill, `redirect-upstream` to the upstream's own URL while the cache fills behind, or `auto`. null keeps the binary's default (auto)."
  type        = string
  default     = null

  validation {
    condition     = var.large_blob_policy == null || contains(["wait", "redirect-upstream", "auto"], coalesce(var.large_blob_policy, "-"))
    error_message = "large_blob_policy must be null, wait, redirect-upstream or auto."
  }
}

variable "large_blob_size" {
  description = "Size from which a blob counts as large for `large_blob_policy`, in bytes or with a binary unit: 536870912, 512MiB, 1GiB (PULLTHROUGH_LARGE_BLOB_SIZE). null keeps the binary's default."
  type        = string
  default     = null

  validation {
    condition     = var.large_blob_size == null || can(regex("^[1-9][0-9]*(B|KiB|MiB|GiB)?$", var.large_blob_size))
    error_message = "large_blob_size must be a whole number of bytes, optionally with B, KiB, MiB or GiB, e.g. 1GiB."
  }
}

variable "fill_timeout" {
  description = "Upper bound for one blob fill from upstream into the bucket, as a Go duration (PULLTHROUGH_FILL_TIMEOUT). A fill runs in one invocation, so it must stay below `timeout` or Lambda kills the fill before it can clean up. null keeps the binary's default (14m)."
  type        = string
  default     = "14m"

  validation {
    condition     = var.fill_timeout == null || can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$", var.fill_timeout))
    error_message = "fill_timeout must be a Go duration such as 10m or 14m30s."
  }

  validation {
    # The duration in seconds is the sum of each number times its unit; the
    # one-element for binds it to a name.
    condition = var.fill_timeout == null || try(alltrue([
      for seconds in [sum([for m in regexall("([0-9]+(?:\\.[0-9]+)?)(ns|us|µs|ms|s|m|h)", var.fill_timeout) : tonumber(m[0]) * lookup({ ns = 1e-9, us = 1e-6, "µs" = 1e-6, ms = 0.001, s = 1, m = 60, h = 3600 }, m[1])])] :
      seconds >= 1 && seconds < var.timeout
    ]), false)
    error_message = "fill_timeout must be at least 1s and shorter than timeout (the function's timeout in seconds, 900 by default)."
  }
}

variable "fill_wait" {
  description = "How long a request waits for a fill that another invocation is running before it answers 503 with Retry-After, as a Go duration (PULLTHROUGH_FILL_WAIT). Keep it under containerd's 5-minute no-progress limit and below `timeout`. null keeps the binary's default (4m)."
  type        = string
  default     = null

  validation {
    condition     = var.fill_wait == null || can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$", var.fill_wait))
    error_message = "fill_wait must be a Go duration such as 90s or 4m."
  }

  validation {
    condition = var.fill_wait == null || try(alltrue([
      for seconds in [sum([for m in regexall("([0-9]+(?:\\.[0-9]+)?)(ns|us|µs|ms|s|m|h)", var.fill_wait) : tonumber(m[0]) * lookup({ ns = 1e-9, us = 1e-6, "µs" = 1e-6, ms = 0.001, s = 1, m = 60, h = 3600 }, m[1])])] :
      seconds > 0 && seconds < var.timeout
    ]), false)
    error_message = "fill_wait must be more than 0s and shorter than timeout (the function's timeout in seconds)."
  }
}

variable "client_cidrs" {
  description = "Source networks (CIDRs or single addresses) allowed to use the mirror (PULLTHROUGH_CLIENT_CIDRS); others get 403. The only protection for Docker's registry-mirrors, which send no credentials. Empty allows any source."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition = alltrue([
      for c in var.client_cidrs : can(cidrhost(c, 0)) || can(cidrhost("${c}/32", 0)) || can(cidrhost("${c}/128", 0))
    ])
    error_message = "Each client_cidrs entry must be an IPv4 or IPv6 CIDR block (10.0.0.0/8, 2001:db8::/32) or a single address."
  }
}

variable "allow_public_access" {
  description = "Acknowledge a mirror that anyone who learns its URL can pull through at your expense. Without client_cidrs or a credentials secret (upstream_credentials_secret_arn or create_upstream_credentials_secret, holding the client tokens/users), planning fails unless this is true. The module cannot read the secret: it must hold `tokens` or `users` for clients to be asked for credentials (see README), and a function whose secret holds only upstream credentials refuses to start (its init error says why) unless this is true. Sets PULLTHROUGH_ALLOW_OPEN."
  type        = bool
  default     = false
  nullable    = false

  # A variable validation, not a check block: a check only warns, and this
  # must stop the plan. Cross-variable references need Terraform >= 1.9.
  validation {
    condition     = var.allow_public_access || length(var.client_cidrs) > 0 || var.upstream_credentials_secret_arn != null || var.create_upstream_credentials_secret
    error_message = "This mirror would be open to the whole internet: set client_cidrs (your nodes' public or NAT gateway addresses), or a credentials secret holding client tokens/users (create_upstream_credentials_secret or upstream_credentials_secret_arn), or allow_public_access = true to accept that anyone who learns the URL pulls through it at your expense."
  }
}

variable "max_blob_size" {
  description = "Largest blob the mirror fetches and stores, in bytes or with a binary unit: 10737418240, 512MiB, 10GiB (PULLTHROUGH_MAX_BLOB_SIZE). Bigger blobs get 403 DENIED before any byte is stored; \"0\" removes the cap. null keeps the binary's default (10GiB)."
  type        = string
  default     = null

  validation {
    condition     = var.max_blob_size == null || can(regex("^(0|[1-9][0-9]*(B|KiB|MiB|GiB)?)$", var.max_blob_size))
    error_message = "max_blob_size must be 0 or a whole number of bytes, optionally with B, KiB, MiB or GiB (10GiB)."
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
  description = "ARN of an existing Secrets Manager secret holding upstream registry credentials and client tokens/users as JSON (PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET; format in README). null pulls anonymously and asks clients for no credentials."
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
  description = "Create an empty Secrets Manager secret for upstream and client credentials and point the function at it. Terraform manages only the secret, never its value; set that with the AWS CLI (see README)."
  type        = bool
  default     = false
  nullable    = false
}

variable "upstream_credentials_kms_key_arn" {
  description = "ARN of a KMS key that encrypts the secret created by create_upstream_credentials_secret (null: the account's aws/secretsmanager key). The role is granted kms:Decrypt on it, which reading the secret needs. For an existing secret under a customer key, set this to that key for the same grant."
  type        = string
  default     = null

  validation {
    condition     = var.upstream_credentials_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.upstream_credentials_kms_key_arn))
    error_message = "upstream_credentials_kms_key_arn must be a KMS key ARN, not an alias."
  }
}

variable "extra_environment" {
  description = "More environment variables for the function, e.g. PULLTHROUGH_FILL_LEASE_TTL or PULLTHROUGH_UPSTREAM_<HOST>_ALLOW. Cannot override the PULLTHROUGH_* variables this module sets or the names Lambda reserves, and takes no credentials: those belong in the credentials secret."
  type        = map(string)
  default     = {}
  nullable    = false

  validation {
    condition = alltrue([
      for k in keys(var.extra_environment) : can(regex("^[A-Za-z][A-Za-z0-9_]*$", k)) && !contains([
        "PULLTHROUGH_STORE", "PULLTHROUGH_UPSTREAM", "PULLTHROUGH_UPSTREAMS", "PULLTHROUGH_DEFAULT_UPSTREAM",
        "PULLTHROUGH_MANIFEST_TTL", "PULLTHROUGH_PRESIGN_TTL", "PULLTHROUGH_LOG_LEVEL",
        "PULLTHROUGH_UPSTREAM_CREDENTIALS_SECRET", "PULLTHROUGH_LARGE_BLOB_POLICY", "PULLTHROUGH_LARGE_BLOB_SIZE", "PULLTHROUGH_MAX_BLOB_SIZE",
        "PULLTHROUGH_FILL_TIMEOUT", "PULLTHROUGH_FILL_WAIT", "PULLTHROUGH_CLIENT_CIDRS", "PULLTHROUGH_ALLOW_OPEN",
        "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
      ], k)
    ])
    error_message = "extra_environment keys must be valid variable names and must not be a PULLTHROUGH_* variable set by this module or a name Lambda reserves (AWS_REGION, AWS_ACCESS_KEY_ID, ...)."
  }

  validation {
    # Environment variables are stored in the Terraform state and shown by
    # GetFunctionConfiguration to anyone who may read the function.
    condition = alltrue([
      for k in keys(var.extra_environment) : !can(regex("^PULLTHROUGH_(CLIENT_TOKENS|CLIENT_USERS|UPSTREAM_([A-Za-z0-9_]+_)?(USERNAME|PASSWORD|TOKEN))$", k))
    ])
    error_message = "extra_environment must not carry credentials (PULLTHROUGH_CLIENT_TOKENS, PULLTHROUGH_CLIENT_USERS, PULLTHROUGH_UPSTREAM_*_USERNAME/_PASSWORD/_TOKEN): put them in the credentials secret (see README), which keeps them out of the Terraform state."
  }
}

variable "tags" {
  description = "Tags for every resource that takes them."
  type        = map(string)
  default     = {}
  nullable    = false
}

################################################################################
# Monitoring
################################################################################

variable "create_dashboard" {
  description = "Create a CloudWatch dashboard named after the function with the cache's metrics per upstream host: hits, misses and stale serves, bytes filled, upstream errors and throttling, and the upstream's remaining rate-limit budget."
  type        = bool
  default     = true
  nullable    = false
}

variable "create_alarms" {
  description = "Create CloudWatch alarms: two per upstream host, one firing when the upstream throttled the cache (answered 429) and one when a background fill from it failed, at least once in 5 minutes; and four on the function (Lambda Errors, Throttles, ConcurrentExecutions, Duration near the timeout)."
  type        = bool
  default     = true
  nullable    = false
}

variable "alarm_thresholds" {
  description = "Thresholds of the function alarms, each over 5 minutes: errors (Sum of invocations that failed or timed out), throttles (Sum of invocations Lambda refused), concurrency (Maximum of concurrent executions; null: 80% of reserved_concurrent_executions, or 800, 80% of the default account limit, when unreserved) and duration_percent (Maximum duration as a share of timeout; a fill that nears it is cut off)."
  type = object({
    errors           = optional(number, 5)
    throttles        = optional(number, 1)
    concurrency      = optional(number)
    duration_percent = optional(number, 90)
  })
  default  = {}
  nullable = false

  validation {
    condition     = var.alarm_thresholds.errors >= 1 && var.alarm_thresholds.throttles >= 1 && try(var.alarm_thresholds.concurrency >= 1, var.alarm_thresholds.concurrency == null) && var.alarm_thresholds.duration_percent > 0 && var.alarm_thresholds.duration_percent <= 100
    error_message = "alarm_thresholds: errors, throttles and concurrency must be at least 1, duration_percent in (0, 100]."
  }
}

variable "alarm_actions" {
  description = "ARNs notified when an alarm fires and when it returns to OK, e.g. an SNS topic. Empty: the alarms only change state."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for a in var.alarm_actions : can(regex("^arn:aws[a-z-]*:[a-z0-9-]+:", a))])
    error_message = "alarm_actions must be ARNs (an SNS topic, an Auto Scaling policy, a Systems Manager OpsItem, ...)."
  }
}

################################################################################
# Eviction (sweep.tf)
################################################################################

variable "retention_days" {
  description = "Enables the daily sweep (PULLTHROUGH_RETENTION): cached tags, manifests and blobs that no tag or digest pulled within this many days uses are deleted, and the role may then delete cached objects. null, the default, never deletes by use (cache_expiration_days is the creation-date fallback)."
  type        = number
  default     = null

  validation {
    # Use is recorded at most once a day, so a shorter retention could
    # delete what was pulled hours ago.
    condition     = var.retention_days == null || try(var.retention_days >= 2 && floor(var.retention_days) == var.retention_days, false)
    error_message = "retention_days must be null or a whole number >= 2."
  }
}

variable "sweep_schedule" {
  description = "When the sweep runs (EventBridge Scheduler expression), if retention_days is set."
  type        = string
  default     = "rate(1 day)"
  nullable    = false

  validation {
    condition     = can(regex("^(rate|cron)\\(.+\\)$", var.sweep_schedule))
    error_message = "sweep_schedule must be a rate(...) or cron(...) expression."
  }
}
