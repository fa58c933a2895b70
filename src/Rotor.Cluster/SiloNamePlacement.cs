using Orleans.Placement;
using Orleans.Runtime;
using Orleans.Runtime.Placement;

namespace Rotor.Cluster;

/// <summary>Places a grain on the silo named by its key (the part after the last '@', or the whole key): shard replicas
/// and embedders belong to one silo's disk and model.</summary>
[Serializable, GenerateSerializer, Immutable, SuppressReferenceTracking, Alias("rotor.SiloNamePlacement")]
public sealed class SiloNamePlacement : PlacementStrategy
{
    /// <summary>The one instance.</summary>
    public static SiloNamePlacement Instance { get; } = new();

    /// <summary>The silo name in a grain key.</summary>
    public static string SiloOf(string key) => key[(key.LastIndexOf('@') + 1)..];
}

/// <summary>Marks a grain class as placed by <see cref="SiloNamePlacement"/>.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class SiloNamePlacementAttribute : PlacementAttribute
{
    /// <summary>The attribute.</summary>
    public SiloNamePlacementAttribute() : base(SiloNamePlacement.Instance) { }
}

/// <summary>Finds the active silo with the name in the key; there is no other place for the grain.</summary>
internal sealed class SiloNamePlacementDirector(IClusterMembershipService membership) : IPlacementDirector
{
    public Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target, IPlacementContext context)
    {
        string name = SiloNamePlacement.SiloOf(target.GrainIdentity.Key.ToString() ?? "");
        var compatible = context.GetCompatibleSilos(target);
        foreach (var m in membership.CurrentSnapshot.Members.Values)
            if (m.Status == SiloStatus.Active && m.Name == name && compatible.Contains(m.SiloAddress)) return Task.FromResult(m.SiloAddress);
        throw new OrleansException($"silo '{name}' is not an active member of the cluster: its grain {target.GrainIdentity} cannot be placed");
    }
}
