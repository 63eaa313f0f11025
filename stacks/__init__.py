"""CDK constructs of the codeclab stack, one module per concern, composed in codeclab_stack."""
