terraform {
  # 1.9 is the first release whose variable validations may refer to other variables.
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 6.28 adds the lambda:InvokeFunction statement that function URLs with
      # authorization NONE need since October 2025.
      version = ">= 6.28"
    }
  }
}
