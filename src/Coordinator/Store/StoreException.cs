namespace HaMesh.Coordinator.Store;

/// <summary>The store cannot be used (unreadable, corrupt, not a HaMesh store, newer schema). The coordinator refuses to start.</summary>
public sealed class StoreException(string message, Exception? inner = null) : Exception(message, inner);
