using System.Reflection;
using HaMesh.Shared.Hosting;
using Microsoft.Extensions.Logging;

namespace HaMesh.Shared.Tests.Hosting;

public sealed class LogFormatTests
{
    [Theory]
    [InlineData(null, false, "simple")]
    [InlineData(null, true, "systemd")]
    [InlineData("", true, "systemd")]
    [InlineData("json", true, "json")]
    [InlineData(" JSON ", false, "json")]
    [InlineData("simple", true, "simple")]
    [InlineData("systemd", false, "systemd")]
    public void Choose_ConfiguredAndJournal_PicksFormatter(string? configured, bool underSystemd, string expected) =>
        Assert.Equal(expected, LogFormat.Choose(configured, underSystemd));

    [Fact]
    public void Choose_UnknownName_NamesKeyAndChoices()
    {
        var e = Assert.Throws<ArgumentException>(() => LogFormat.Choose("xml", false));
        Assert.Contains("Logging:Console:FormatterName is 'xml': use simple, json or systemd", e.Message);
    }

    public static TheoryData<string, int, int> Ranges => new()
    {
        { "hamesh-agent", 1000, 1999 },
        { "hamesh-coordinator", 2000, 2999 },
        { "HaMesh.Shared", 3000, 3999 },
    };

    private static IEnumerable<(MethodInfo Method, LoggerMessageAttribute Attribute)> LogMethods(Assembly assembly) =>
        from type in assembly.GetTypes()
        from method in type.GetMethods(BindingFlags.Static | BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly)
        let attribute = method.GetCustomAttribute<LoggerMessageAttribute>()
        where attribute is not null
        select (method, attribute);

    private static Assembly Load(string name) => name switch
    {
        "hamesh-agent" => typeof(HaMesh.Agent.Metrics.AgentMetrics).Assembly,
        "hamesh-coordinator" => typeof(HaMesh.Coordinator.Metrics.CoordinatorMetrics).Assembly,
        _ => typeof(LogFormat).Assembly,
    };

    [Theory]
    [MemberData(nameof(Ranges))]
    public void LoggerMessages_EveryEventIdInItsProjectRangeAndUnique(string assembly, int low, int high)
    {
        var methods = LogMethods(Load(assembly)).ToList();
        Assert.NotEmpty(methods);
        Assert.All(methods, m => Assert.InRange(m.Attribute.EventId, low, high));
        var all = new[] { "hamesh-agent", "hamesh-coordinator", "HaMesh.Shared" }.SelectMany(a => LogMethods(Load(a))).GroupBy(m => m.Attribute.EventId).Where(g => g.Count() > 1)
            .Select(g => $"{g.Key}: {string.Join(", ", g.Select(m => m.Method.DeclaringType!.FullName + "." + m.Method.Name))}");
        Assert.Empty(all);
    }

    [Theory]
    [MemberData(nameof(Ranges))]
    public void LoggerMessages_NoParameterCarriesASecret(string assembly, int low, int high)
    {
        _ = (low, high);
        string[] forbidden = ["secret", "consumer", "signature", "password", "credential", "token"];
        var offending = LogMethods(Load(assembly))
            .SelectMany(m => m.Method.GetParameters().Select(p => (m.Method, Name: p.Name ?? "")))
            .Where(p => forbidden.Any(f => p.Name.Contains(f, StringComparison.OrdinalIgnoreCase)))
            .Select(p => $"{p.Method.DeclaringType!.FullName}.{p.Method.Name}({p.Name})");
        Assert.Empty(offending);
    }
}
