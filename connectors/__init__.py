"""Calendar back ends behind one small interface (`connectors.base.Connector`)."""
