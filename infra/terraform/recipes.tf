# Node-side recipes for every registry the mirror serves; see
# modules/node-recipes for the formats and the documents they follow.
module "node_recipes" {
  source = "./modules/node-recipes"

  mirror_url = trimsuffix(aws_lambda_function_url.this.function_url, "/")
  upstreams  = local.upstream_urls
}
