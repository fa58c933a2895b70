using System.Diagnostics.CodeAnalysis;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.VectorData.ProviderServices;

namespace Rotor.Index.VectorData;

/// <summary>Builds the record model (key, data, vector properties) from the VectorStore attributes or a
/// definition, and says which property types Rotor stores.</summary>
internal sealed class RotorModelBuilder() : CollectionModelBuilder(new CollectionModelBuildingOptions
{
    SupportsMultipleVectors = false,
    RequiresAtLeastOneVector = true,
})
{
    internal static readonly Type[] DataTypes =
    [
        typeof(string), typeof(int), typeof(long), typeof(short), typeof(byte), typeof(float), typeof(double), typeof(decimal),
        typeof(bool), typeof(Guid), typeof(DateTime), typeof(DateTimeOffset),
    ];

    protected override bool IsDataPropertyTypeValid(Type type, [NotNullWhen(false)] out string? supportedTypes)
    {
        supportedTypes = "string, int, long, short, byte, float, double, decimal, bool, Guid, DateTime, DateTimeOffset (or nullable)";
        var t = Nullable.GetUnderlyingType(type) ?? type;
        return DataTypes.Contains(t);
    }

    protected override bool IsVectorPropertyTypeValid(Type type, [NotNullWhen(false)] out string? supportedTypes)
    {
        supportedTypes = "ReadOnlyMemory<float>, float[], Embedding<float>";
        return type == typeof(ReadOnlyMemory<float>) || type == typeof(ReadOnlyMemory<float>?) || type == typeof(float[]) || type == typeof(Embedding<float>);
    }
}
